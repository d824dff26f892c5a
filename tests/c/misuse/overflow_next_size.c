/* misuse: a one-byte overflow past a block rewrites the low byte of the next chunk's
 * size (to 'A' = 0x41: a smaller size, in-use bit set), and that chunk is then freed.
 * Its size now ends inside it, where the zeroed data says the chunk "after" it is free.
 * expect: abort "double free or corruption (!prev)" */
#include <malloc.h>

#include "misuse.h"

int main(void)
{
    /* The overflow must hit the next chunk: take two blocks that are neighbours. */
    char *a = NULL, *b = NULL;
    for (int tries = 0; tries < 16; tries++) {
        a = malloc(5000);
        b = malloc(5000);
        if (b == a + malloc_usable_size(a) + sizeof(size_t))
            break;
    }
    if (b != a + malloc_usable_size(a) + sizeof(size_t)) {
        fprintf(stderr, "no two neighbouring blocks found\n");
        return 2;
    }
    char *guard = opaque(malloc(5000));
    memset(b, 0, 5000);
    memset(opaque(a), 'A', malloc_usable_size(a) + 1);   /* one byte too many */
    free(b);
    free(a);
    free(guard);
    return unnoticed();
}
