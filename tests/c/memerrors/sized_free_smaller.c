/* memory error: free_sized (a C++ sized delete) with a size far smaller than the block's.
 * default: abort "free_sized(): size mismatch"
 * hardened: abort "free_sized(): size mismatch" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(200));
    free_sized(p, 40);
    return unnoticed();
}
