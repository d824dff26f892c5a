/* memory error: a block with its own mapping written after it was freed.
 * default: trap
 * hardened: trap "segfault: write after free" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE));
    free(p);
    ((char *)opaque(p))[100000] = 'X';
    return unnoticed();
}
