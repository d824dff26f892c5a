/* misuse: free of an array on the stack.
 * expect: abort "free(): invalid pointer" */
#include "misuse.h"

int main(void)
{
    _Alignas(16) char local[256];
    memset(local, 0, sizeof local);
    free(opaque(local + 64));
    return unnoticed();
}
