/* misuse: a small-bin-sized block (600 bytes: above the fast bins) freed twice, the
 * thread cache being full.
 * expect: abort "double free or corruption (!prev)" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(600));
    char *guard = opaque(malloc(600));          /* keeps p from merging into top */
    fill_thread_cache(600);
    free(p);
    free(opaque(p));
    free(guard);
    return unnoticed();
}
