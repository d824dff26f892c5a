/* misuse: a large block (40000 bytes: above the thread cache's largest class, so it is
 * freed to the arena's bins) freed twice.
 * expect: abort "double free or corruption (!prev)" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(40000));
    char *guard = opaque(malloc(40000));        /* keeps p from merging into top */
    free(p);
    free(opaque(p));
    free(guard);
    return unnoticed();
}
