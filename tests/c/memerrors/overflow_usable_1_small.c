/* memory error: a NUL written one byte past a small block's usable size (an off-by-one
 * string terminator), over the low byte of the next chunk's size.
 * default: abort "double free or corruption (!prev)"
 * hardened: abort "free(): canary overwritten" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(8));
    ((char *)opaque(p))[malloc_usable_size(p)] = 0;
    free(p);
    return unnoticed();
}
