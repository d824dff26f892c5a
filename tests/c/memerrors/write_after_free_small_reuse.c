/* memory error: a small block written after it was freed, while the program goes on
 * allocating blocks of its size.
 * default: missed: the block's chunk was handed out again at once, so the write lands in the new block
 * hardened: abort "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(128));
    free(p);
    opaque(malloc(128));
    ((char *)opaque(p))[65] = 'X';
    for (int i = 0; i < 100000; i++)
        free(opaque(malloc(128)));
    return unnoticed();
}
