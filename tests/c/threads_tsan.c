/* threads_tsan.c - the core's threading under ThreadSanitizer: this program is compiled
 * together with csrc/core/ with -fsanitize=thread (tests/test_tsan.py), so every lock,
 * every atomic of the remote-free stacks and of the thread caches, and every plain access
 * the allocator makes from several threads is checked for data races.
 *
 * PAIRS producer/consumer pairs: each producer allocates blocks of 16 B to 40 KiB (small
 * cache sizes, large cache classes, arena sizes), fills them, frees one in four itself
 * (local frees, into its cache and arena) and hands the rest through a mutex-protected
 * queue to its consumer, which has an arena of its own, checks and frees them (remote
 * frees: pushed onto the producer's arena's lock-free stack, drained by the producer's
 * next allocations, by the consumer's batch drains and by malloc_trim). Another thread
 * reallocs blocks of its own meanwhile. At the end the heap is checked (prm_check).
 *
 * usage: threads_tsan [PAIRS] [BLOCKS]   prints "threads_tsan ok: ..." and exits 0. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prm.h"

#define QUEUE 256

struct pair {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    unsigned char *items[QUEUE];
    size_t sizes[QUEUE];
    unsigned head, tail;
    int done;
    unsigned long blocks;
    unsigned long bad;
};

static void die(const char *what)
{
    fprintf(stderr, "threads_tsan: %s\n", what);
    exit(1);
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t some_size(uint64_t *rng)
{
    unsigned r = (unsigned)(next_random(rng) % 100);
    if (r < 60)
        return 16 + next_random(rng) % 1000;
    if (r < 95)
        return 1100 + next_random(rng) % 31000;
    return 33000 + next_random(rng) % 7000;
}

static void *producer(void *arg)
{
    struct pair *pair = arg;
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    for (unsigned long i = 0; i < pair->blocks; i++) {
        size_t size = some_size(&rng);
        unsigned char *p = prm_malloc(size);
        if (p == NULL)
            die("prm_malloc returned NULL");
        memset(p, (int)(size & 0xff), size);
        if (i % 4 == 0) {
            prm_free(p);
            continue;
        }
        pthread_mutex_lock(&pair->mu);
        while (pair->tail - pair->head == QUEUE)
            pthread_cond_wait(&pair->changed, &pair->mu);
        pair->items[pair->tail % QUEUE] = p;
        pair->sizes[pair->tail % QUEUE] = size;
        pair->tail++;
        pthread_cond_broadcast(&pair->changed);
        pthread_mutex_unlock(&pair->mu);
    }
    pthread_mutex_lock(&pair->mu);
    pair->done = 1;
    pthread_cond_broadcast(&pair->changed);
    pthread_mutex_unlock(&pair->mu);
    return NULL;
}

static void *consumer(void *arg)
{
    struct pair *pair = arg;
    prm_free(prm_malloc(64));          /* an arena of its own: its frees are remote */
    for (;;) {
        pthread_mutex_lock(&pair->mu);
        while (pair->head == pair->tail && !pair->done)
            pthread_cond_wait(&pair->changed, &pair->mu);
        if (pair->head == pair->tail) {
            pthread_mutex_unlock(&pair->mu);
            return NULL;
        }
        unsigned char *p = pair->items[pair->head % QUEUE];
        size_t size = pair->sizes[pair->head % QUEUE];
        pair->head++;
        pthread_cond_broadcast(&pair->changed);
        pthread_mutex_unlock(&pair->mu);
        if (p[0] != (unsigned char)(size & 0xff) || p[size - 1] != (unsigned char)(size & 0xff))
            pair->bad++;
        prm_free(p);
    }
}

static void *reallocer(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    unsigned char *p = NULL;
    for (int i = 0; i < 2000; i++) {
        size_t size = some_size(&rng);
        p = prm_realloc(p, size);
        if (p == NULL)
            die("prm_realloc returned NULL");
        p[size - 1] = 1;
    }
    prm_free(p);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned pairs = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    unsigned long blocks = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    if (pairs < 1 || pairs > 16)
        die("PAIRS must be 1 to 16");
    /* The core initialises on its first call; as the LD_PRELOAD library's constructor
     * and the Python module do, make that call before any thread exists (the fast path
     * reads the parameters without an acquire of their publication). */
    prm_free(prm_malloc(1));
    struct pair *all = calloc(pairs, sizeof *all);
    pthread_t threads[2 * 16 + 1];
    for (unsigned i = 0; i < pairs; i++) {
        pthread_mutex_init(&all[i].mu, NULL);
        pthread_cond_init(&all[i].changed, NULL);
        all[i].blocks = blocks;
        if (pthread_create(&threads[2 * i], NULL, producer, &all[i]) != 0 ||
            pthread_create(&threads[2 * i + 1], NULL, consumer, &all[i]) != 0)
            die("pthread_create failed");
    }
    if (pthread_create(&threads[2 * pairs], NULL, reallocer, (void *)(uintptr_t)7) != 0)
        die("pthread_create failed");
    for (unsigned i = 0; i < 2 * pairs + 1; i++)
        pthread_join(threads[i], NULL);
    unsigned long bad = 0;
    for (unsigned i = 0; i < pairs; i++)
        bad += all[i].bad;
    prm_malloc_trim(0);
    prm_stats stats;
    prm_get_stats(&stats);
    if (bad != 0)
        die("a block arrived damaged");
    char message[512];
    if (prm_check(message, sizeof message) != PRM_OK) {
        fprintf(stderr, "threads_tsan: prm_check: %s\n", message);
        return 1;
    }
    printf("threads_tsan ok: pairs=%u blocks=%lu remote_frees=%llu remote_pending=%zu\n", pairs,
           blocks, (unsigned long long)stats.remote_frees, stats.remote_pending);
    free(all);
    return 0;
}
