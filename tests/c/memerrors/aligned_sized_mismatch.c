/* memory error: free_aligned_sized with the wrong size for an aligned block.
 * default: abort "free_sized(): size mismatch"
 * hardened: abort "free_sized(): size mismatch" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(aligned_alloc(64, 512));
    free_aligned_sized(p, 64, 64);
    return unnoticed();
}
