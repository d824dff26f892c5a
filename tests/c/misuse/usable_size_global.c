/* misuse: malloc_usable_size of a global array (a pointer malloc never returned).
 * expect: abort "malloc_usable_size(): invalid pointer" */
#include "misuse.h"

#include <malloc.h>

static _Alignas(16) char global[256];

int main(void)
{
    size_t usable = malloc_usable_size(opaque(global + 64));
    (void)usable;
    return unnoticed();
}
