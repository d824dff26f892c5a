/* misuse: realloc of a block already freed.
 * expect: abort "realloc(): invalid pointer" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(5000));
    char *guard = opaque(malloc(5000));         /* keeps p from merging into top */
    free(p);
    p = realloc(opaque(p), 6000);
    free(guard);
    (void)p;
    return unnoticed();
}
