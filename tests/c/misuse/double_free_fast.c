/* misuse: a fast-bin-sized block freed twice, the thread cache being full, so both
 * frees reach the fast bin.
 * expect: abort "double free or corruption (fasttop)" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(64));
    fill_thread_cache(64);
    free(p);
    free(opaque(p));
    return unnoticed();
}
