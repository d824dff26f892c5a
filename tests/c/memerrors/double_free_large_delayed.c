/* memory error: a block with its own mapping freed twice with another free between.
 * default: abort "free(): double free detected (munmapped chunk)"
 * hardened: abort "free(): double free detected (quarantine)" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE)), *q = opaque(malloc(LARGE));
    free(p);
    free(q);
    free(opaque(p));
    return unnoticed();
}
