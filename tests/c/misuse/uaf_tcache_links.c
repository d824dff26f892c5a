/* misuse: text written through a stale pointer into a block the thread cache holds
 * (over its link), then two mallocs of that size.
 * expect: abort "malloc(): tcache link corrupted" */
#include "misuse.h"

int main(void)
{
    char *a = malloc(64);
    char *b = opaque(malloc(64));
    free(a);
    free(b);
    memcpy(b, "AAAAAAAA", 8);           /* use after free */
    opaque(malloc(64));
    opaque(malloc(64));
    return unnoticed();
}
