/* memory error: a one-byte overflow of a small block (inside its chunk's slack).
 * default: missed: the byte lands in the chunk's own unused bytes (100 asked, 104 usable)
 * hardened: abort "free(): canary overwritten" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    memset(opaque(p), 'A', 101);
    free(p);
    return unnoticed();
}
