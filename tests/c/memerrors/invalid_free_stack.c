/* memory error: free of a stack array.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char buffer[64] __attribute__((aligned(16)));
    memset(buffer, 0, sizeof buffer);
    free(opaque(buffer + 16));
    return unnoticed();
}
