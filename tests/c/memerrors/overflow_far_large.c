/* memory error: a write one page past the end of a block with its own mapping (a long
 * linear overflow).
 * default: missed: mappings are packed, so the write lands in whatever is mapped above the block
 * hardened: trap "segfault: write past the end of a block" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(LARGE));
    ((char *)opaque(p))[LARGE + 4096 + 64] = 'X';
    free(p);
    return unnoticed();
}
