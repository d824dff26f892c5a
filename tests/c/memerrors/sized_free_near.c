/* memory error: free_sized with a size a few bytes off the block's (96 for 100).
 * default: missed: without the canary only the chunk's size is known, and 96 fits it
 * hardened: abort "free_sized(): size mismatch" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free_sized(p, 96);
    return unnoticed();
}
