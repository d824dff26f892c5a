/* memory error: realloc of a freed block.
 * default: abort "realloc(): invalid pointer"
 * hardened: abort "realloc(): invalid pointer" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(100));
    free(p);
    opaque(realloc(opaque(p), 200));
    return unnoticed();
}
