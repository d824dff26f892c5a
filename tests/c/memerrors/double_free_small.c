/* memory error: a small-bin-sized block freed twice (the thread cache full).
 * default: abort "double free or corruption (!prev)"
 * hardened: abort "free(): double free detected (canary)" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(600));
    opaque(malloc(600));
    fill_thread_cache(600);
    free(p);
    free(opaque(p));
    return unnoticed();
}
