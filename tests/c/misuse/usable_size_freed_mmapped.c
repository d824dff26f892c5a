/* misuse: malloc_usable_size of a large (mmapped) block after free: its mapping went
 * back to the kernel (but for the tombstone page), and the registry names it.
 * expect: abort "malloc_usable_size(): invalid pointer" */
#include "misuse.h"

#include <malloc.h>

int main(void)
{
    char *p = malloc(1 << 20);
    if (p == NULL)
        return 4;
    p[0] = 1;
    free(p);
    size_t usable = malloc_usable_size(opaque(p));
    (void)usable;
    return unnoticed();
}
