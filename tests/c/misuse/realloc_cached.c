/* misuse: realloc of a block already freed into the thread cache (where the boundary
 * tags still say "in use").
 * expect: abort "realloc(): invalid pointer" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(100));
    free(p);
    p = realloc(opaque(p), 200);
    (void)p;
    return unnoticed();
}
