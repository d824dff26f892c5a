/* memory error: a block with its own mapping read after it was freed (64 KiB in).
 * default: trap
 * hardened: trap "segfault: read after free" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE));
    memset(p, 1, LARGE);
    free(p);
    touch(opaque(p + 65536));
    return unnoticed();
}
