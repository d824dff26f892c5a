/* misuse: free of a pointer into the middle of a live block (text was stored there).
 * expect: abort "free(): invalid pointer" */
#include "misuse.h"

int main(void)
{
    char *p = malloc(256);
    memset(p, 'A', 256);
    free(opaque(p + 64));
    return unnoticed();
}
