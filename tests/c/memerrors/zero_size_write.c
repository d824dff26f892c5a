/* memory error: a write into a block of size zero.
 * default: missed: malloc(0) returns the smallest chunk (24 usable bytes), as glibc does
 * hardened: trap "segfault: write of a zero-size block" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(0));
    ((char *)opaque(p))[0] = 'X';
    free(p);
    return unnoticed();
}
