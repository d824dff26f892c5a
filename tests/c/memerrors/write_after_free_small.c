/* memory error: a small block written after it was freed (past the cache's link).
 * default: missed: the write lands in a cached chunk's unused bytes, which nothing checks
 * hardened: abort at exit "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(64));
    free(p);
    ((char *)opaque(p))[40] = 'X';
    return unnoticed();
}
