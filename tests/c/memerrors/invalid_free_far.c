/* memory error: free of a pointer 1 GiB past a small block, where nothing is mapped.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(16));
    free(opaque(p + ((size_t)1 << 30)));
    return unnoticed();
}
