/* thread_cache.c - per-thread caches and arenas under the preloaded library: a thread
 * that filled its cache gives it back when it exits (the in-use bytes of mallinfo2
 * return to what they were), and threads alive at the same time get arenas of their
 * own, up to arena_max. Prints one summary line; the test reads the exit report for
 * the arena count.
 *
 * usage: thread_cache THREADS */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>

#include "common.h"

static pthread_barrier_t all_alive;

/* Fill every cache bin (7 chunks of each size up to 1 KiB, and of the large classes
 * 7 chunks of 1.5 KiB to 8 KiB, 2 of 32 KiB: about 200 KiB), then wait for the others, so
 * that every thread is alive, and attached, at once. */
static void *fill_cache(void *arg)
{
    (void)arg;
    void *blocks[64][7], *large[12][7];
    static const size_t large_sizes[12] = { 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
                                            6000, 7000, 8000, 32768 };
    for (int size = 0; size < 64; size++)
        for (int i = 0; i < 7; i++)
            REQUIRE((blocks[size][i] = malloc((size_t)size * 16 + 8)) != NULL);
    for (int k = 0; k < 12; k++)
        for (int i = 0; i < 7; i++)
            REQUIRE((large[k][i] = malloc(large_sizes[k])) != NULL);
    for (int size = 0; size < 64; size++)
        for (int i = 0; i < 7; i++)
            free(blocks[size][i]);
    for (int k = 0; k < 12; k++)
        for (int i = 0; i < 7; i++)
            free(large[k][i]);
    pthread_barrier_wait(&all_alive);
    return NULL;
}

int main(int argc, char **argv)
{
    prog_name = "thread_cache";
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    REQUIRE(threads >= 1 && threads <= 64);
    free(malloc(1));   /* the main thread takes the main arena first */
    size_t before = mallinfo2().uordblks;

    pthread_t ids[64];
    pthread_barrier_init(&all_alive, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++)
        REQUIRE(pthread_create(&ids[t], NULL, fill_cache, NULL) == 0);
    for (int t = 0; t < threads; t++)
        REQUIRE(pthread_join(ids[t], NULL) == 0);

    size_t after = mallinfo2().uordblks;
    /* Every chunk the threads cached went back; what stays is arena bookkeeping: the
     * segment header of each new arena's heap and its arena record (uordblks counts
     * them as in use, as glibc counts its heap_info). Allow 16 KiB per thread for it. */
    REQUIRE(after <= before + (size_t)threads * 16384,
            "in use grew from %zu to %zu bytes: thread caches were not given back", before, after);
    printf("thread_cache ok: threads=%d in-use before=%zu after=%zu allocator=%s\n", threads,
           before, after, allocator_object());
    return 0;
}
