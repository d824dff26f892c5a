/* memory error: malloc_usable_size of a freed small block.
 * default: abort "malloc_usable_size(): invalid pointer"
 * hardened: abort "malloc_usable_size(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free(p);
    opaque((void *)malloc_usable_size(opaque(p)));
    return unnoticed();
}
