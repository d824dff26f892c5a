/* memory error: a small block's first bytes written after it was freed, then the next
 * blocks of its size are allocated.
 * default: abort "malloc(): tcache link corrupted"
 * hardened: abort at exit "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *a = opaque(malloc(64)), *b = opaque(malloc(64));
    free(a);
    free(b);
    memcpy(opaque(b), "AAAAAAAA", 8);
    opaque(malloc(64));
    opaque(malloc(64));
    return unnoticed();
}
