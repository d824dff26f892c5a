/* fork_threads.c - fork() while other threads are inside the allocator. THREADS worker
 * threads allocate, realloc and free in a loop (sizes across the bins and the mmap
 * threshold) while the main thread forks FORKS times. Each child, which inherits the
 * heap as it was at that instant (any lock a worker held stays held unless the allocator
 * handles fork):
 *   1. verifies and frees blocks the workers allocated (so it takes their arenas' locks),
 *   2. verifies and frees blocks the main thread allocated just before the fork,
 *   3. mallocs, writes, verifies, reallocs, callocs, memaligns and frees several sizes,
 *      from 1 byte to 2 MiB (above the mmap threshold),
 *   4. starts a thread that allocates and frees too (a fresh thread's arena),
 * and _exit(0)s. The parent waits for each child with a timeout: a child that does not
 * exit in time is killed and reported as hung (a deadlock), one that exits nonzero or
 * dies of a signal as failed. A watchdog fails the parent itself if it stops making
 * progress (fork() stuck in an atfork handler, a lock never released).
 *
 * usage: fork_threads THREADS FORKS [CHILD_TIMEOUT_SECONDS] [SEED]
 * prints one line "fork_threads ok: ..." and exits 0; otherwise names each failed child
 * on stderr and exits 1 (3 if the watchdog fired). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "common.h"

#define MAX_THREADS 64
#define WORKER_SLOTS 32
#define PUBLISHED 4             /* blocks per worker that children free */
#define WITNESSES 3             /* blocks the main thread allocates before each fork */
#define MAX_HUNG 3              /* stop forking after this many hung children */

static const size_t published_sizes[PUBLISHED] = { 48, 700, 20000, 300000 };
static const size_t witness_sizes[WITNESSES] = { 100, 5000, 300000 };

struct block {
    unsigned char *p;
    size_t size;
    uint64_t id;
};

struct worker {
    int index;
    pthread_t thread;
    uint64_t rng;
    uint64_t next_id;
    unsigned long ops;
    atomic_int inside;          /* 1 while in malloc/realloc/free: sampled at each fork */
    struct block slots[WORKER_SLOTS];
    struct block published[PUBLISHED];
};

static struct worker workers[MAX_THREADS];
static int nthreads;
static atomic_bool stop;
static pthread_barrier_t published_barrier;
static volatile sig_atomic_t current_child;   /* pid, for kill_children_hook */

/* Sizes: 70% up to 256 B, 20% to 4 KiB, 8% to 64 KiB, 2% 128-512 KiB (mmapped). */
static size_t worker_size(uint64_t *rng)
{
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < 70)
        return rng_range(rng, 1, 256);
    if (r < 90)
        return rng_range(rng, 257, 4096);
    if (r < 98)
        return rng_range(rng, 4097, 64 * 1024);
    return rng_range(rng, 128 * 1024 + 1, 512 * 1024);
}

static struct block make_block(size_t size, uint64_t id, const char *who)
{
    struct block b = { opaque(malloc(size)), size, id };
    REQUIRE(b.p != NULL, "%s: malloc(%zu) returned NULL", who, size);
    REQUIRE(addr_of(b.p) % min_alignment(size) == 0, "%s: malloc(%zu) = %p unaligned", who,
            size, (void *)b.p);
    pattern_fill(b.p, 0, size, id);
    return b;
}

static void drop_block(struct block *b, const char *who)
{
    if (b->p == NULL)
        return;
    REQUIRE_PATTERN(b->p, b->size, b->id, who);
    free(b->p);
    b->p = NULL;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int k = 0; k < PUBLISHED; k++)
        w->published[k] = make_block(published_sizes[k], w->next_id++, "worker publishing");
    pthread_barrier_wait(&published_barrier);
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        struct block *b = &w->slots[rng_next(&w->rng) % WORKER_SLOTS];
        unsigned r = (unsigned)(rng_next(&w->rng) % 100);
        if (b->p != NULL)
            REQUIRE_PATTERN(b->p, b->size, b->id, "worker block");
        atomic_store_explicit(&w->inside, 1, memory_order_relaxed);
        if (r < 60 || b->p == NULL) {
            free(b->p);
            b->size = worker_size(&w->rng);
            b->id = w->next_id++;
            b->p = opaque(malloc(b->size));
            atomic_store_explicit(&w->inside, 0, memory_order_relaxed);
            REQUIRE(b->p != NULL, "worker: malloc(%zu) returned NULL", b->size);
            pattern_fill(b->p, 0, b->size, b->id);
        } else if (r < 80) {
            size_t old = b->size;
            b->size = worker_size(&w->rng);
            b->p = opaque(realloc(b->p, b->size));
            atomic_store_explicit(&w->inside, 0, memory_order_relaxed);
            REQUIRE(b->p != NULL, "worker: realloc to %zu returned NULL", b->size);
            long bad = pattern_check(b->p, 0, old < b->size ? old : b->size, b->id);
            REQUIRE(bad < 0, "worker: realloc(%zu -> %zu) lost byte %ld", old, b->size, bad);
            if (b->size > old)
                pattern_fill(b->p, old, b->size, b->id);
        } else {
            free(b->p);
            atomic_store_explicit(&w->inside, 0, memory_order_relaxed);
            b->p = NULL;
        }
        if (b->p != NULL)
            REQUIRE(addr_of(b->p) % min_alignment(b->size) == 0, "worker: %p unaligned",
                    (void *)b->p);
        w->ops++;
    }
    for (int s = 0; s < WORKER_SLOTS; s++)
        drop_block(&w->slots[s], "worker final free");
    for (int k = 0; k < PUBLISHED; k++)
        drop_block(&w->published[k], "worker freeing its published block");
    return NULL;
}

/* ---- the child ------------------------------------------------------------------------ */

static void *child_thread(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    struct block held[8] = { { 0 } };
    for (int i = 0; i < 200; i++) {
        struct block *b = &held[rng_next(&rng) % 8];
        drop_block(b, "child thread");
        *b = make_block(worker_size(&rng), rng_next(&rng), "child thread");
    }
    for (int i = 0; i < 8; i++)
        drop_block(&held[i], "child thread final");
    return NULL;
}

static __attribute__((noreturn)) void child_body(unsigned fork_no, struct block *witness)
{
    kill_children_hook = NULL;
    prog_name = "fork_threads(child)";
    /* 1. the workers' blocks: free() must take the lock of the arena they came from */
    for (int t = 0; t < nthreads; t++)
        for (int k = 0; k < PUBLISHED; k++)
            drop_block(&workers[t].published[k], "child freeing a worker's block");
    /* 2. the main thread's blocks from just before the fork */
    for (int k = 0; k < WITNESSES; k++)
        drop_block(&witness[k], "child freeing a pre-fork block");
    /* 3. fresh allocations of every kind */
    static const size_t sizes[] = { 1, 24, 100, 1000, 5000, 70000, 200000, 2 * 1024 * 1024 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    struct block fresh[N];
    uint64_t id = ((uint64_t)fork_no << 32) | 0xc0de0000;
    for (int i = 0; i < N; i++)
        fresh[i] = make_block(sizes[i], id + (uint64_t)i, "child");
    for (int i = 0; i < N; i += 2) {            /* grow half of them, past the threshold */
        size_t old = fresh[i].size, size = old * 3 + 150000;
        unsigned char *p = opaque(realloc(fresh[i].p, size));
        REQUIRE(p != NULL, "child: realloc(%zu -> %zu) returned NULL", old, size);
        long bad = pattern_check(p, 0, old, fresh[i].id);
        REQUIRE(bad < 0, "child: realloc(%zu -> %zu) lost byte %ld", old, size, bad);
        pattern_fill(p, old, size, fresh[i].id);
        fresh[i].p = p;
        fresh[i].size = size;
    }
    unsigned char *z = opaque(calloc(300, 1000));
    REQUIRE(z != NULL, "child: calloc(300, 1000) returned NULL");
    for (size_t i = 0; i < 300 * 1000; i++)
        REQUIRE(z[i] == 0, "child: calloc byte %zu is %#x", i, z[i]);
    unsigned char *a = opaque(memalign(4096, 10000));
    REQUIRE(a != NULL && addr_of(a) % 4096 == 0, "child: memalign(4096, 10000) = %p", (void *)a);
    memset(a, 0x5a, 10000);
    free(a);
    free(z);
    for (int i = 0; i < N; i++)
        drop_block(&fresh[i], "child");
    /* 4. a thread of the child's own */
    pthread_t t;
    int rc = pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(fork_no * 7919u + 1));
    REQUIRE(rc == 0, "child: pthread_create: %s", strerror(rc));
    REQUIRE(pthread_join(t, NULL) == 0);
    _exit(0);
}

/* ---- the parent ----------------------------------------------------------------------- */

static void kill_current_child(void)
{
    if (current_child > 0)
        kill(current_child, SIGKILL);
}

enum outcome { CHILD_OK, CHILD_FAILED, CHILD_HUNG };

/* Wait for pid at most timeout seconds; describe a failure into why. */
static enum outcome wait_child(pid_t pid, double timeout, char *why, size_t why_len)
{
    double deadline = now_seconds() + timeout;
    long nap = 20;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        REQUIRE(r == 0 || errno == EINTR, "waitpid(%d): %s", (int)pid, strerror(errno));
        if (now_seconds() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            snprintf(why, why_len, "hung for %.0f s (deadlock?), killed", timeout);
            return CHILD_HUNG;
        }
        sleep_us(nap);
        if (nap < 2000)
            nap *= 2;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return CHILD_OK;
    if (WIFEXITED(status))
        snprintf(why, why_len, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(why, why_len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    return CHILD_FAILED;
}

int main(int argc, char **argv)
{
    prog_name = "fork_threads";
    if (argc < 3) {
        fprintf(stderr, "usage: fork_threads THREADS FORKS [CHILD_TIMEOUT_SECONDS] [SEED]\n");
        return 2;
    }
    nthreads = (int)arg_ulong(argc, argv, 1, 4, 1, MAX_THREADS, "THREADS");
    unsigned forks = (unsigned)arg_ulong(argc, argv, 2, 200, 1, 100000, "FORKS");
    unsigned timeout = (unsigned)arg_ulong(argc, argv, 3, 10, 1, 3600, "CHILD_TIMEOUT_SECONDS");
    uint64_t seed = arg_ulong(argc, argv, 4, 1, 0, ~0UL, "SEED");
    double t0 = now_seconds();
    (void)min_alignment(1);     /* reads PRELOAD_TEST_C_ALIGNMENT before any thread */
    kill_children_hook = kill_current_child;
    watchdog_start(timeout + 20, 86400);

    watchdog_set_phase("starting workers");
    REQUIRE(pthread_barrier_init(&published_barrier, NULL, (unsigned)nthreads + 1) == 0);
    for (int t = 0; t < nthreads; t++) {
        struct worker *w = &workers[t];
        w->index = t;
        w->rng = mix64(seed * 0x100000001b3ULL + (uint64_t)t);
        w->next_id = ((uint64_t)(t + 1) << 48) | 1;
        int rc = pthread_create(&w->thread, NULL, work, w);
        REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
    }
    pthread_barrier_wait(&published_barrier);

    unsigned ok = 0, failed = 0, hung = 0, busy_forks = 0, done = 0;
    char report[4096] = "";
    size_t report_len = 0;
    for (unsigned i = 0; i < forks && hung < MAX_HUNG; i++, done++) {
        watchdog_set_phase("allocating before fork");
        struct block witness[WITNESSES];
        for (int k = 0; k < WITNESSES; k++)
            witness[k] = make_block(witness_sizes[k], ((uint64_t)0xaa << 48) | (i * 8u + (unsigned)k),
                                    "main before fork");
        for (int t = 0; t < nthreads; t++)
            if (atomic_load_explicit(&workers[t].inside, memory_order_relaxed)) {
                busy_forks++;
                break;
            }
        watchdog_set_phase("fork");
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork #%u: %s", i, strerror(errno));
        if (pid == 0)
            child_body(i, witness);
        current_child = pid;
        watchdog_set_phase("waiting for a child");
        char why[128];
        switch (wait_child(pid, timeout, why, sizeof why)) {
        case CHILD_OK:
            ok++;
            break;
        case CHILD_HUNG:
            hung++;
            /* fall through */
        case CHILD_FAILED:
            failed++;
            if (failed <= 10)
                report_len += (size_t)snprintf(report + report_len, sizeof report - report_len,
                                               "%schild of fork #%u (pid %d) %s",
                                               report_len ? "; " : "", i, (int)pid, why);
            break;
        }
        current_child = 0;
        watchdog_set_phase("freeing after fork");
        for (int k = 0; k < WITNESSES; k++)
            drop_block(&witness[k], "parent freeing a pre-fork block");
        watchdog_bump();
    }

    watchdog_set_phase("joining workers");
    atomic_store(&stop, true);
    unsigned long worker_ops = 0;
    for (int t = 0; t < nthreads; t++) {
        REQUIRE(pthread_join(workers[t].thread, NULL) == 0);
        worker_ops += workers[t].ops;
    }
    watchdog_stop();
    if (failed > 0) {
        fprintf(stderr, "FAIL fork_threads: %u of %u children failed%s: %s\n", failed, done,
                hung >= MAX_HUNG ? " (stopped after too many hung children)" : "", report);
        printf("fork_threads FAILED: threads=%d forks=%u children-ok=%u failed=%u hung=%u\n",
               nthreads, done, ok, failed, hung);
        return 1;
    }
    printf("fork_threads ok: threads=%d forks=%u children-ok=%u failed=0 "
           "forks-with-a-worker-inside-malloc=%u worker-ops=%lu time=%.2fs allocator=%s\n",
           nthreads, done, ok, busy_forks, worker_ops, now_seconds() - t0, allocator_object());
    return 0;
}
