/* misuse: a stale pointer to a freed 600-byte struct is used to store another heap
 * pointer in its first two fields, which are the chunk's bin links now; then mallocs of
 * that size take the chunk out of its bin.
 * expect: abort "malloc(): unsorted double linked list corrupted" */
#include "misuse.h"

struct node { struct node *next, *prev; char payload[584]; };

int main(void)
{
    struct node *other = malloc(sizeof *other);
    struct node *n = opaque(malloc(sizeof *n));
    char *guard = opaque(malloc(16));
    fill_thread_cache(sizeof *n);
    free(n);                            /* to the unsorted bin */
    n->next = other;                    /* use after free */
    n->prev = other;
    for (int i = 0; i < 9; i++)
        opaque(malloc(sizeof *n));
    free(guard);
    return unnoticed();
}
