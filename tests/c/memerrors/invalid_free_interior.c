/* memory error: free of a pointer into the middle of a live block.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(calloc(1, 200));
    free(opaque(p + 64));
    return unnoticed();
}
