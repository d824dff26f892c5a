/* misuse: free of a global array.
 * expect: abort "free(): invalid pointer" */
#include "misuse.h"

static _Alignas(16) char global[256];

int main(void)
{
    free(opaque(global + 64));
    return unnoticed();
}
