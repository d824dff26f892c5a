/* misuse: a block freed twice by a thread that does not use the block's arena, before
 * the arena's owner allocates again: the first free left it pending on the arena's
 * remote-free stack (40000 bytes: above the thread cache, below the mmap threshold).
 * expect: abort "free(): double free detected (remote)" */
#include <pthread.h>

#include "misuse.h"

static char *block;

static void *second_thread(void *arg)
{
    (void)arg;
    free(malloc(100));          /* this thread takes an arena of its own */
    free(block);
    free(opaque(block));
    return NULL;
}

int main(void)
{
    block = opaque(malloc(40000));
    char *guard = opaque(malloc(40000));        /* keeps the block from merging into top */
    pthread_t thread;
    if (pthread_create(&thread, NULL, second_thread, NULL) != 0)
        return 4;
    pthread_join(thread, NULL);
    free(guard);
    return unnoticed();
}
