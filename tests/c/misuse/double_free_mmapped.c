/* misuse: a block with a mapping of its own (1 MiB) freed twice: its memory is unmapped
 * by the first free, so the second must not read it.
 * expect: abort "free(): double free detected (munmapped chunk)" */
#include "misuse.h"

int main(void)
{
    char *p = opaque(malloc(1 << 20));
    free(p);
    free(opaque(p));
    return unnoticed();
}
