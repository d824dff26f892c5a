/* memory error: an eight-byte overflow past a small block's usable end, over the next
 * chunk's size, then both blocks freed.
 * default: abort "free(): invalid next size (tcache)"
 * hardened: abort "free(): canary overwritten" */
#include "memerror.h"
int main(void)
{
    char *a = opaque(malloc(1000)), *b = opaque(malloc(1000));
    memset(opaque(a), 'A', malloc_usable_size(a) + 8);
    free(a);
    free(b);
    return unnoticed();
}
