/* memory error: an eight-byte overflow of a block with its own mapping.
 * default: missed: the bytes land in the mapping's last page, past the request
 * hardened: abort "free(): canary overwritten" */
#include "memerror.h"
int main(void)
{
    size_t n = LARGE + 100;
    char *p = opaque(malloc(n));
    memset(opaque(p), 'A', n + 8);
    free(p);
    return unnoticed();
}
