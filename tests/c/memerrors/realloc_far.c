/* memory error: realloc of a pointer 1 GiB past a small block, where nothing is mapped
 * (a wild pointer): the header must not be read before the pointer is known to be ours.
 * default: abort "realloc(): invalid pointer"
 * hardened: abort "realloc(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(16));
    opaque(realloc(opaque(p + ((size_t)1 << 30)), 64));
    return unnoticed();
}
