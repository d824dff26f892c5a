/* memory error: a block with its own mapping read at its first byte after it was freed.
 * default: missed: the first page stays mapped as the tombstone that names a second free
 * hardened: trap "segfault: read after free" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE));
    memset(p, 1, LARGE);
    free(p);
    touch(opaque(p));
    return unnoticed();
}
