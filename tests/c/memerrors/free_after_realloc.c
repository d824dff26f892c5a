/* memory error: free of the old pointer after realloc moved the block.
 * default: missed: the old chunk went to a fast bin; the cache's free takes it without asking the arena
 * hardened: abort "free(): double free detected (canary)" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    opaque(malloc(16));                      /* no room to grow in place */
    char *q = opaque(realloc(p, 5000));
    if (q == p)
        return 2;
    free(opaque(p));
    return unnoticed();
}
