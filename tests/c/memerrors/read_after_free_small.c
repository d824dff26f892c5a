/* memory error: a small block read after it was freed.
 * default: missed: the block's memory is the heap's, readable; nothing looks at reads
 * hardened: missed: heap pages hold other blocks and cannot be closed per block; the read gets the quarantine's pattern, not the old data */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(64));
    strcpy(p, "secret");
    free(p);
    touch(opaque(p + 20));
    return unnoticed();
}
