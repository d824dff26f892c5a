/* memory error: free of a block's address plus one (not 16-byte aligned).
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free(opaque(p + 1));
    return unnoticed();
}
