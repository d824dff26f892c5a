/* memory error: free of memory the program mapped itself.
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return 2;
    free(opaque(page + 64));
    return unnoticed();
}
