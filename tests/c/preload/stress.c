/* stress.c - N threads hammer the allocator: random sizes across every bin class and
 * across the 128 KiB mmap threshold (mostly small, some 1-2 KiB, some 64 KiB - 1 MiB);
 * blocks travel between threads through a shared array of lock-protected slots, so
 * many (a third with 16 threads) are freed or realloc'ed by a thread other than the one
 * that allocated them; realloc chains grow and shrink a block repeatedly and check the
 * preserved prefix; calloc memory must read as zero; memalign, posix_memalign,
 * aligned_alloc and valloc results must be aligned; malloc_usable_size must cover the
 * request. Every block carries a pattern derived from an id written in its first
 * bytes, verified in full before it is freed. At the end every block is freed. The
 * choices each thread makes are deterministic per seed (the interleaving is not).
 *
 * glibc's mmap threshold is dynamic: once a mmapped block of 1 MiB is freed, blocks up
 * to 1 MiB come from the heap. MMAP_THRESHOLD, a number of bytes, pins it with mallopt
 * (which also turns the dynamic adjustment off) so that the large blocks really
 * straddle it; "dynamic" (the default) leaves the allocator's own behaviour.
 *
 * usage: stress THREADS OPS_PER_THREAD [SEED] [MMAP_THRESHOLD|dynamic] [DEADLINE_SECONDS]
 * prints one line "stress ok: ..." and exits 0, or "FAIL stress file:line: check..."
 * and exits 1; 3 if the watchdog fired (no progress for 10 s: a deadlock; or the run
 * took longer than DEADLINE_SECONDS, default 120). */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>

#include "common.h"

#define LOCAL_SLOTS 64          /* blocks a thread holds */
#define EXCHANGE_SLOTS 256      /* blocks in transit between threads */
#define MAX_THREADS 256
#define MAX_BLOCK (1024 * 1024 + 4096)

struct block {
    unsigned char *p;           /* NULL: empty slot */
    size_t size;                /* bytes requested (the pattern covers exactly these) */
    uint64_t id;
    int owner;                  /* worker that last allocated or realloc'ed it; -1: main */
};

struct exchange_slot {
    pthread_mutex_t lock;
    struct block b;
};

static struct exchange_slot exchange[EXCHANGE_SLOTS];

struct counts {
    uint64_t mallocs, callocs, aligned, reallocs, frees;
    uint64_t cross_frees, cross_reallocs, mmap_sized, handoffs;
};

struct worker {
    int index;
    pthread_t thread;
    uint64_t rng;
    uint64_t next_id;
    unsigned long ops;
    struct block local[LOCAL_SLOTS];
    struct counts c;
};

static struct worker workers[MAX_THREADS];
static pthread_barrier_t start_line;
static unsigned long ops_per_thread;
static size_t page_size;

/* Sizes: 40% up to 128 B (tcache and fast bins), 25% to 1 KiB (small bins), 15% 1-2
 * KiB (first large bins), 15% 2-64 KiB (large bins), 5% 64 KiB - 1 MiB (either side of
 * the mmap threshold). */
static size_t random_size(uint64_t *rng)
{
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < 40)
        return rng_range(rng, 1, 128);
    if (r < 65)
        return rng_range(rng, 129, 1024);
    if (r < 80)
        return rng_range(rng, 1025, 2048);
    if (r < 95)
        return rng_range(rng, 2049, 64 * 1024);
    return rng_range(rng, 64 * 1024 + 1, 1024 * 1024);
}

static void note_size(struct worker *w, size_t size)
{
    if (size > 128 * 1024)
        w->c.mmap_sized++;
}

/* p is non-NULL, aligned to align (at least the minimum for size) and big enough. */
static void require_fit(const unsigned char *p, size_t size, size_t align, const char *how)
{
    REQUIRE(p != NULL, "%s(%zu) returned NULL", how, size);
    if (align < min_alignment(size))
        align = min_alignment(size);
    REQUIRE(addr_of(p) % align == 0, "%s(%zu) = %p is not %zu-aligned", how, size,
            (const void *)p, align);
    REQUIRE(malloc_usable_size((void *)p) >= size, "%s(%zu) = %p: malloc_usable_size %zu",
            how, size, (const void *)p, malloc_usable_size((void *)p));
}

/* Verify b's pattern in full and free it. */
static void release(struct worker *w, struct block *b, const char *why)
{
    if (b->p == NULL)
        return;
    REQUIRE_PATTERN(b->p, b->size, b->id, why);
    free(b->p);
    w->c.frees++;
    w->ops++;
    if (b->owner != w->index)
        w->c.cross_frees++;
    b->p = NULL;
}

static struct block new_block(struct worker *w)
{
    struct block b = { NULL, random_size(&w->rng), w->next_id++, w->index };
    unsigned r = (unsigned)(rng_next(&w->rng) % 100);
    note_size(w, b.size);
    if (r < 70) {
        b.p = opaque(malloc(b.size));
        require_fit(b.p, b.size, 1, "malloc");
        w->c.mallocs++;
    } else if (r < 85) {
        size_t each = rng_range(&w->rng, 1, 64);
        size_t count = b.size / each + 1;
        b.size = count * each;
        b.p = opaque(calloc(count, each));
        require_fit(b.p, b.size, 1, "calloc");
        for (size_t i = 0; i < b.size; i++)
            REQUIRE(b.p[i] == 0, "calloc(%zu, %zu) = %p: byte %zu is %#x", count, each,
                    (void *)b.p, i, b.p[i]);
        w->c.callocs++;
    } else {
        size_t align = (size_t)1 << rng_range(&w->rng, 4, 12);
        if (rng_next(&w->rng) % 16 == 0)
            align = 64 * 1024;
        switch (r % 4) {
        case 0:
            b.p = opaque(memalign(align, b.size));
            require_fit(b.p, b.size, align, "memalign");
            break;
        case 1: {
            void *out = NULL;
            int rc = posix_memalign(&out, align, b.size);
            REQUIRE(rc == 0, "posix_memalign(%zu, %zu) returned %d", align, b.size, rc);
            b.p = opaque(out);
            require_fit(b.p, b.size, align, "posix_memalign");
            break;
        }
        case 2: {
            /* C11 asks for a size that is a multiple of the alignment; give one. */
            size_t size = (b.size + align - 1) / align * align;
            b.p = opaque(aligned_alloc(align, size));
            require_fit(b.p, size, align, "aligned_alloc");
            break;
        }
        default:
            b.p = opaque(valloc(b.size));
            require_fit(b.p, b.size, page_size, "valloc");
            break;
        }
        w->c.aligned++;
    }
    w->ops++;
    pattern_fill(b.p, 0, b.size, b.id);
    return b;
}

/* Grow and shrink slot s through 1-4 reallocs, checking that the prefix survives each
 * move and extending the pattern over what was added. */
static void realloc_chain(struct worker *w, struct block *b)
{
    if (b->p == NULL)
        *b = new_block(w);
    unsigned steps = (unsigned)rng_range(&w->rng, 1, 4);
    for (unsigned i = 0; i < steps; i++) {
        size_t old = b->size, size;
        switch (rng_next(&w->rng) % 3) {
        case 0:
            size = random_size(&w->rng);
            break;
        case 1:
            size = rng_range(&w->rng, 1, old);                    /* shrink (or keep) */
            break;
        default:
            size = old + rng_range(&w->rng, 1, old < 64 ? 64 : old);  /* grow up to 2x */
            if (size > MAX_BLOCK)
                size = MAX_BLOCK;
            break;
        }
        note_size(w, size);
        unsigned char *p = opaque(realloc(b->p, size));
        require_fit(p, size, 1, "realloc");
        size_t keep = old < size ? old : size;
        long bad = pattern_check(p, 0, keep, b->id);
        REQUIRE(bad < 0, "realloc(%p, %zu -> %zu) = %p lost the prefix at byte %ld",
                (void *)b->p, old, size, (void *)p, bad);
        if (size > old)
            pattern_fill(p, old, size, b->id);
        if (b->owner != w->index)
            w->c.cross_reallocs++;
        b->p = p;
        b->size = size;
        b->owner = w->index;
        w->c.reallocs++;
        w->ops++;
    }
}

/* Swap a local block with a random exchange slot; the block taken may belong to any
 * thread. Sometimes free it at once, a direct cross-thread free. */
static void hand_off(struct worker *w, struct block *b, bool free_now)
{
    struct exchange_slot *e = &exchange[rng_next(&w->rng) % EXCHANGE_SLOTS];
    pthread_mutex_lock(&e->lock);
    struct block taken = e->b;
    e->b = *b;
    pthread_mutex_unlock(&e->lock);
    *b = taken;
    w->c.handoffs++;
    if (free_now)
        release(w, b, "free after hand-off");
}

static void *work(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(&start_line);
    for (unsigned long i = 0; w->ops < ops_per_thread; i++) {
        struct block *b = &w->local[rng_next(&w->rng) % LOCAL_SLOTS];
        unsigned r = (unsigned)(rng_next(&w->rng) % 100);
        if (r < 35) {
            release(w, b, "free before reuse");
            *b = new_block(w);
        } else if (r < 47) {
            realloc_chain(w, b);
        } else if (r < 55) {
            release(w, b, "free");
        } else if (r < 95) {
            hand_off(w, b, r < 75);
        } else if (b->p != NULL) {
            REQUIRE_PATTERN(b->p, b->size, b->id, "read back");
        }
        if (i % 256 == 0)
            watchdog_bump();
    }
    for (int s = 0; s < LOCAL_SLOTS; s++)
        release(w, &w->local[s], "final free");
    return NULL;
}

int main(int argc, char **argv)
{
    prog_name = "stress";
    if (argc < 3) {
        fprintf(stderr, "usage: stress THREADS OPS_PER_THREAD [SEED] [MMAP_THRESHOLD|dynamic] "
                        "[DEADLINE_SECONDS]\n");
        return 2;
    }
    int threads = (int)arg_ulong(argc, argv, 1, 1, 1, MAX_THREADS, "THREADS");
    ops_per_thread = arg_ulong(argc, argv, 2, 0, 1, 1UL << 40, "OPS_PER_THREAD");
    uint64_t seed = arg_ulong(argc, argv, 3, 1, 0, ~0UL, "SEED");
    unsigned long threshold = 0;
    if (argc > 4 && strcmp(argv[4], "dynamic") != 0)
        threshold = arg_ulong(argc, argv, 4, 0, 1, 1UL << 30, "MMAP_THRESHOLD");
    unsigned deadline = (unsigned)arg_ulong(argc, argv, 5, 120, 1, 86400, "DEADLINE_SECONDS");
    if (threshold != 0)
        REQUIRE(mallopt(M_MMAP_THRESHOLD, (int)threshold) == 1, "mallopt(M_MMAP_THRESHOLD, %lu)",
                threshold);
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    (void)min_alignment(1);     /* reads PRELOAD_TEST_C_ALIGNMENT before any thread */
    double t0 = now_seconds();
    /* Some thread bumps the progress counter every 256 operations: 10 s without a bump
     * is a deadlock, not a slow allocator. */
    watchdog_start(deadline < 10 ? deadline : 10, deadline);

    for (int s = 0; s < EXCHANGE_SLOTS; s++)
        REQUIRE(pthread_mutex_init(&exchange[s].lock, NULL) == 0);
    REQUIRE(pthread_barrier_init(&start_line, NULL, (unsigned)threads) == 0);
    watchdog_set_phase("threads working");
    for (int t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->index = t;
        w->rng = mix64(seed * 0x100000001b3ULL + (uint64_t)t);
        w->next_id = ((uint64_t)(t + 1) << 48) | 1;
        int rc = pthread_create(&w->thread, NULL, work, w);
        REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
    }
    struct counts total = { 0 };
    unsigned long ops = 0;
    for (int t = 0; t < threads; t++) {
        REQUIRE(pthread_join(workers[t].thread, NULL) == 0);
        struct counts *c = &workers[t].c;
        total.mallocs += c->mallocs;
        total.callocs += c->callocs;
        total.aligned += c->aligned;
        total.reallocs += c->reallocs;
        total.frees += c->frees;
        total.cross_frees += c->cross_frees;
        total.cross_reallocs += c->cross_reallocs;
        total.mmap_sized += c->mmap_sized;
        total.handoffs += c->handoffs;
        ops += workers[t].ops;
    }

    /* The blocks still in transit: freed here, by a thread that allocated none. */
    watchdog_set_phase("freeing blocks in transit");
    struct worker main_thread = { .index = -2 };
    for (int s = 0; s < EXCHANGE_SLOTS; s++)
        release(&main_thread, &exchange[s].b, "free of a block in transit");
    ops += main_thread.ops;
    uint64_t allocations = total.mallocs + total.callocs + total.aligned;
    REQUIRE(total.frees + main_thread.c.frees == allocations,
            " %llu allocations, %llu frees", (unsigned long long)allocations,
            (unsigned long long)(total.frees + main_thread.c.frees));
    if (threads > 1 && ops_per_thread >= 1000)
        REQUIRE(total.cross_frees > 0, "no block was freed by another thread");
    watchdog_stop();

    printf("stress ok: threads=%d ops=%lu malloc=%llu calloc=%llu aligned=%llu realloc=%llu "
           "free=%llu cross-thread-free=%llu cross-thread-realloc=%llu over-128KiB=%llu "
           "seed=%llu mmap-threshold=%s time=%.2fs allocator=%s\n",
           threads, ops, (unsigned long long)total.mallocs, (unsigned long long)total.callocs,
           (unsigned long long)total.aligned, (unsigned long long)total.reallocs,
           (unsigned long long)(total.frees + main_thread.c.frees),
           (unsigned long long)(total.cross_frees + main_thread.c.frees),
           (unsigned long long)total.cross_reallocs, (unsigned long long)total.mmap_sized,
           (unsigned long long)seed, threshold ? argv[4] : "dynamic", now_seconds() - t0,
           allocator_object());
    return 0;
}
