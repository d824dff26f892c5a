/* memory error: malloc_usable_size of a pointer into the middle of a live block.
 * default: abort "malloc_usable_size(): invalid pointer"
 * hardened: abort "malloc_usable_size(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(calloc(1, 300));
    opaque((void *)malloc_usable_size(opaque(p + 128)));
    return unnoticed();
}
