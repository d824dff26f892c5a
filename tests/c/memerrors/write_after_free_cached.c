/* memory error: a small block's first bytes overwritten after it was freed, and nothing
 * allocated after: the damage sits in the thread cache until the program exits.
 * default: abort at exit "free(): write after free detected (tcache)"
 * hardened: abort at exit "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(16));
    free(p);
    memset(opaque(p), 'a', 16);
    return unnoticed();
}
