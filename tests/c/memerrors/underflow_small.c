/* memory error: eight bytes written just before a small block (over its own size).
 * default: abort "free(): invalid pointer"
 * hardened: abort "free(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    memset(opaque(p - 8), 'A', 8);
    free(p);
    return unnoticed();
}
