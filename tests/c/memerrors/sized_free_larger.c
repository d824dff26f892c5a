/* memory error: free_sized with a size larger than the block.
 * default: abort "free_sized(): size mismatch"
 * hardened: abort "free_sized(): size mismatch" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free_sized(p, 300);
    return unnoticed();
}
