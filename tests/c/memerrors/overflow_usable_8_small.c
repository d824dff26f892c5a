/* memory error: one bit flipped eight bytes past a small block's usable size, in the top
 * byte of the next chunk's size.
 * default: abort "free(): invalid next size (tcache)"
 * hardened: abort "free(): canary overwritten" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(8));
    ((char *)opaque(p))[malloc_usable_size(p) + 7] ^= 1;
    free(p);
    return unnoticed();
}
