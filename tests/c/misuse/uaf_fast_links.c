/* misuse: text written through a stale pointer over a fast-bin chunk's link, then
 * mallocs of that size until the fast bin is reached.
 * expect: abort "malloc(): fastbin link corrupted" */
#include "misuse.h"

int main(void)
{
    char *a = opaque(malloc(64));
    fill_thread_cache(64);
    free(a);                            /* the cache is full: a goes to a fast bin */
    memcpy(a, "AAAAAAAAAAAAAAAA", 16);  /* use after free */
    for (int i = 0; i < 9; i++)         /* 7 from the cache, then the fast bin */
        opaque(malloc(64));
    return unnoticed();
}
