/* misuse: a large block (5000 bytes: above the thread cache) freed twice.
 * expect: abort "double free or corruption (!prev)" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(5000));
    char *guard = opaque(malloc(5000));         /* keeps p from merging into top */
    free(p);
    free(opaque(p));
    free(guard);
    return unnoticed();
}
