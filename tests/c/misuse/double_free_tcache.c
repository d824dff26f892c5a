/* misuse: a block of a thread-cache size freed twice.
 * expect: abort "free(): double free detected in tcache 2" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(64));
    free(p);
    free(opaque(p));
    return unnoticed();
}
