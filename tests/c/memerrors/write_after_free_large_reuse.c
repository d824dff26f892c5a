/* memory error: a block with its own mapping written after it was freed and a block of
 * the same size was allocated again.
 * default: trap
 * hardened: trap "segfault: write after free" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE));
    free(p);
    opaque(malloc(LARGE));
    ((char *)opaque(p))[65537] = 'X';
    return unnoticed();
}
