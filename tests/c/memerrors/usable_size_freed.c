/* memory error: malloc_usable_size of a freed small block.
 * default: missed: a cached chunk looks in use to its boundary tags
 * hardened: abort "malloc_usable_size(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free(p);
    opaque((void *)malloc_usable_size(opaque(p)));
    return unnoticed();
}
