/* memory error: a small block freed twice in a row (a thread-cache size).
 * default: abort "free(): double free detected in tcache 2"
 * hardened: abort "free(): double free detected (canary)" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(64));
    free(p);
    free(opaque(p));
    return unnoticed();
}
