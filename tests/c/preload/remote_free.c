/* remote_free.c - frees from threads that do not use the block's arena (issue 14): they
 * push the block onto the arena's lock-free stack, and the arena's next lock holder
 * frees it for real. Observed from outside through mallinfo2's in-use bytes (a pending
 * block still counts as in use) and through the blocks' contents:
 *
 *   1. pending: a thread frees blocks another thread's arena owns; they stay in use until
 *      that arena is used again (its owner allocates), then they are free;
 *   2. fork with frees pending: the child inherits the stack; its malloc_trim(0) frees
 *      them, and the child allocates and frees normally;
 *   3. many producers and consumers: PRODUCERS threads allocate blocks of 16 B to 40 KiB
 *      (cached sizes, large classes, arena sizes), stamp them and hand them through a
 *      queue to CONSUMERS threads, which verify and free them, ROUNDS times; every block
 *      arrives intact and, once every thread has allocated again, nothing stays pending.
 *
 * usage: remote_free PRODUCERS CONSUMERS BLOCKS
 * prints "remote_free ok: ..." and exits 0, or names the failed check and exits 1. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>

#include "common.h"

static size_t in_use(void)
{
    return mallinfo2().uordblks;
}

/* ---- 1 and 2: one owner thread, frees from the main thread ------------------------------- */

enum { K = 64, BIG = 40000 };     /* above the thread cache's classes, below mmap */
static void *owned[K];
static pthread_barrier_t step;

static void *owner(void *arg)
{
    (void)arg;
    free(malloc(100));            /* attach to an arena of its own */
    for (int i = 0; i < K; i++)
        REQUIRE((owned[i] = malloc(BIG)) != NULL);
    pthread_barrier_wait(&step);  /* main frees them now */
    pthread_barrier_wait(&step);  /* main has checked and forked */
    void *p = malloc(BIG);        /* the owner allocates: its arena drains the stack */
    REQUIRE(p != NULL);
    free(p);
    pthread_barrier_wait(&step);
    return NULL;
}

static void pending_and_fork(void)
{
    pthread_t thread;
    pthread_barrier_init(&step, NULL, 2);
    REQUIRE(pthread_create(&thread, NULL, owner, NULL) == 0);
    pthread_barrier_wait(&step);
    size_t before = in_use();
    for (int i = 0; i < K; i++)
        free(owned[i]);
    size_t after = in_use();
    REQUIRE(after + 4096 >= before, "in use fell from %zu to %zu: the owner's blocks were freed "
            "at once, not left for its arena", before, after);

    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        prog_name = "remote_free(child)";
        size_t child_before = in_use();
        malloc_trim(0);
        size_t child_after = in_use();
        if (child_after + (size_t)K * BIG > child_before)
            _exit(10);             /* trim did not free the pending blocks */
        for (int i = 0; i < 100; i++) {
            unsigned char *p = malloc((size_t)(i * 397 % 50000) + 1);
            if (p == NULL)
                _exit(11);
            memset(p, i, (size_t)(i * 397 % 50000) + 1);
            free(p);
        }
        _exit(0);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child of a fork with frees pending failed: status %#x (10: malloc_trim "
            "freed nothing pending)", status);
    pthread_barrier_wait(&step);  /* the owner allocates now */
    pthread_barrier_wait(&step);
    size_t drained = in_use();
    REQUIRE(drained + (size_t)K * BIG <= before, "in use is %zu after the owner allocated, "
            "%zu before the frees: the pending blocks were not freed", drained, before);
    pthread_join(thread, NULL);
}

/* ---- 3: producers and consumers ------------------------------------------------------- */

#define QUEUE 1024
static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    unsigned char *items[QUEUE];
    size_t head, tail;
    int producers_left;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
        { 0 }, 0, 0, 0 };
static unsigned long blocks_per_producer;
static atomic_ulong consumed, bad;

static void *producer(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    for (unsigned long i = 0; i < blocks_per_producer; i++) {
        unsigned r = (unsigned)(rng_next(&rng) % 100);
        size_t size = r < 60 ? rng_range(&rng, 16, 1024) : r < 95 ? rng_range(&rng, 1025, 32768)
                                                                   : rng_range(&rng, 32769, 40000);
        unsigned char *p = malloc(size);
        REQUIRE(p != NULL);
        uint64_t id = (uint64_t)(uintptr_t)arg << 40 | i;
        memcpy(p, &size, 8);           /* size and id first, then the pattern of the id */
        memcpy(p + 8, &id, 8);
        pattern_fill(p, 16, size, id);
        pthread_mutex_lock(&q.mu);
        while (q.tail - q.head == QUEUE)
            pthread_cond_wait(&q.not_full, &q.mu);
        q.items[q.tail++ % QUEUE] = p;
        pthread_cond_signal(&q.not_empty);
        pthread_mutex_unlock(&q.mu);
    }
    pthread_mutex_lock(&q.mu);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    free(malloc(64));             /* an arena of its own: every free here is remote */
    for (;;) {
        pthread_mutex_lock(&q.mu);
        while (q.head == q.tail && q.producers_left > 0)
            pthread_cond_wait(&q.not_empty, &q.mu);
        if (q.head == q.tail) {
            pthread_mutex_unlock(&q.mu);
            return NULL;
        }
        unsigned char *p = q.items[q.head++ % QUEUE];
        pthread_cond_signal(&q.not_full);
        pthread_mutex_unlock(&q.mu);
        size_t size;
        uint64_t id;
        memcpy(&size, p, 8);
        memcpy(&id, p + 8, 8);
        if (size < 16 || size > 40000 || pattern_check(p, 16, size, id) >= 0)
            atomic_fetch_add(&bad, 1);
        free(p);
        atomic_fetch_add(&consumed, 1);
    }
}

int main(int argc, char **argv)
{
    prog_name = "remote_free";
    unsigned producers = (unsigned)arg_ulong(argc, argv, 1, 4, 1, 64, "PRODUCERS");
    unsigned consumers = (unsigned)arg_ulong(argc, argv, 2, 4, 1, 64, "CONSUMERS");
    blocks_per_producer = arg_ulong(argc, argv, 3, 20000, 1, 100000000, "BLOCKS");
    watchdog_start(30, 600);

    watchdog_set_phase("frees left pending, then a fork");
    pending_and_fork();
    watchdog_bump();

    watchdog_set_phase("producers and consumers");
    pthread_t threads[128];
    q.producers_left = (int)producers;
    for (unsigned i = 0; i < consumers; i++)
        REQUIRE(pthread_create(&threads[i], NULL, consumer, NULL) == 0);
    for (unsigned i = 0; i < producers; i++)
        REQUIRE(pthread_create(&threads[consumers + i], NULL, producer,
                               (void *)(uintptr_t)(i + 1)) == 0);
    for (unsigned i = 0; i < producers + consumers; i++)
        pthread_join(threads[i], NULL);
    watchdog_stop();
    unsigned long total = (unsigned long)producers * blocks_per_producer;
    REQUIRE(atomic_load(&consumed) == total, "%lu of %lu blocks consumed",
            atomic_load(&consumed), total);
    REQUIRE(atomic_load(&bad) == 0, "%lu blocks arrived damaged", atomic_load(&bad));
    malloc_trim(0);               /* drains what the exited producers' arenas still hold */
    printf("remote_free ok: producers=%u consumers=%u blocks=%lu allocator=%s\n", producers,
           consumers, total, allocator_object());
    return 0;
}
