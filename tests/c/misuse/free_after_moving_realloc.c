/* misuse: free through the pointer a realloc moved away from (a big block, whose
 * mapping mremap moved: the old address is unmapped).
 * expect: abort "free(): double free detected (munmapped chunk)" */
#include "misuse.h"

int main(void)
{
    char *old = opaque(malloc(1 << 20));
    char *p = old;
    for (size_t size = (size_t)64 << 20; size <= (size_t)1 << 30 && p == old; size *= 4)
        p = realloc(p, size);                       /* until the kernel has to move it */
    if (p == old) {
        fprintf(stderr, "no realloc moved the mapping\n");
        return 2;
    }
    free(opaque(old));
    return unnoticed();
}
