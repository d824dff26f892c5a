/* misuse: a block of a large thread-cache class (4 KiB) freed twice.
 * expect: abort "free(): double free detected in tcache 2" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(4000));
    free(p);
    free(opaque(p));
    return unnoticed();
}
