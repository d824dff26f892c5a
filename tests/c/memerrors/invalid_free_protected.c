/* memory error: free of a pointer into a mapping the program made inaccessible (an
 * uninitialised pointer that happens to land there): the header must not be read.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    free(opaque(malloc(16)));
    char *region = mmap(NULL, 16 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        return 2;
    free(opaque(region + 8 * 4096));
    return unnoticed();
}
