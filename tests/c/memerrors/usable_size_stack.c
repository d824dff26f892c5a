/* memory error: malloc_usable_size of a stack array.
 * default: abort "malloc_usable_size(): invalid pointer"
 * hardened: abort "malloc_usable_size(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char buffer[64] __attribute__((aligned(16)));
    memset(buffer, 0, sizeof buffer);
    opaque((void *)malloc_usable_size(opaque(buffer + 16)));
    return unnoticed();
}
