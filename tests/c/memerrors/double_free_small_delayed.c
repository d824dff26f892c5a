/* memory error: a small block freed twice with another free between.
 * default: abort "free(): double free detected in tcache 2"
 * hardened: abort "free(): double free detected (canary)" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(16)), *q = opaque(malloc(16));
    free(p);
    free(q);
    free(opaque(p));
    return unnoticed();
}
