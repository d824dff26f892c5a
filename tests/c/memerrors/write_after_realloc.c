/* memory error: a write through the old pointer after realloc moved the block.
 * default: missed: the old chunk's bytes past its links are nobody's to check
 * hardened: abort at exit "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    opaque(malloc(16));
    char *q = opaque(realloc(p, 5000));
    if (q == p)
        return 2;
    ((char *)opaque(p))[50] = 'X';
    free(q);
    return unnoticed();
}
