/* memory error: free of a global array.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
static char table[256] __attribute__((aligned(16)));
int main(void)
{
    free(opaque(table + 32));
    return unnoticed();
}
