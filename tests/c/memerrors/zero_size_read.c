/* memory error: a read from a block of size zero.
 * default: missed: malloc(0) returns the smallest chunk (24 usable bytes), as glibc does
 * hardened: trap "segfault: read of a zero-size block" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(0));
    touch(opaque(p));
    free(p);
    return unnoticed();
}
