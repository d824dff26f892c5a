/* large_cache.c - the thread cache's large classes (requests of 1 KiB to 32 KiB) under the
 * preloaded library, observed from outside through what malloc returns and through
 * mallinfo2's in-use bytes (cached chunks count as in use, as in glibc):
 *   - a request is rounded up to its class, so a freed block serves the next request of
 *     any size in that class, from the cache (the same address comes back);
 *   - a class's bin holds tcache_count chunks (and at most 64 KiB); with tcache_grow=0
 *     freeing more sends the rest to the arena, with tcache_grow=1 (the default) a bin
 *     that overflows and ran dry since it last grew doubles its limit, up to 8 x
 *     tcache_count and its 64 KiB, and a full bin that may not grow gives half its
 *     chunks back to the arena;
 *   - all of a thread's large bins hold at most 1 MiB;
 *   - with tcache_count=0 nothing is cached.
 * The expected tcache_count and tcache_grow come as the arguments (the test sets the
 * options).
 *
 * usage: large_cache TCACHE_COUNT TCACHE_GROW
 * prints "large_cache ok: ..." and exits 0, or names the failed check and exits 1. */
#define _GNU_SOURCE
#include <malloc.h>

#include "common.h"

#define BUDGET (1u << 20)

static size_t in_use(void)
{
    return mallinfo2().uordblks;
}

/* A class's chunk size, as csrc/core/malloc.c's table has it. */
static size_t class_chunk(unsigned i)
{
    return ((size_t)1024 << (i / 8)) + (size_t)(i % 8 + 1) * ((size_t)128 << (i / 8)) + 16;
}

/* How many chunks a large bin holds after `frees` frees into it from empty (it just ran
 * dry), by the rules above: its limit starts at tcache_count (at most `cap`, its 64 KiB);
 * a free into a full bin raises the limit (x2, up to 8 x tcache_count and cap) if it may
 * grow and ran dry since it last grew, or else (growth on) gives half the bin back, and
 * is then cached if there is room. */
static unsigned bin_after_frees(unsigned count, unsigned cap, int grow, int frees)
{
    unsigned limit = count < cap ? count : cap;
    unsigned most = grow ? (8 * count < cap ? 8 * count : cap) : limit;
    unsigned held = 0;
    int ran_dry = 1;
    for (int i = 0; i < frees; i++) {
        if (held >= limit) {
            if (limit < most && ran_dry) {
                limit = 2 * limit < most ? 2 * limit : most;
                ran_dry = 0;
            } else if (grow && limit > 0) {
                held -= limit / 2 > 0 ? limit / 2 : 1;
            }
        }
        if (held < limit)
            held++;
    }
    return held;
}

int main(int argc, char **argv)
{
    prog_name = "large_cache";
    unsigned count = (unsigned)arg_ulong(argc, argv, 1, 7, 0, 1000, "TCACHE_COUNT");
    int grow = (int)arg_ulong(argc, argv, 2, 1, 0, 1, "TCACHE_GROW");
    free(malloc(4000));      /* the cache exists; the 4 KiB class may now hold one */
    void *warm = malloc(4000);

    /* 1. A freed 4000-byte block serves a 3900-byte request: both are in class 4096. */
    unsigned char *p = opaque(malloc(4000));
    REQUIRE(p != NULL);
    size_t usable = malloc_usable_size(p);
    if (count > 0)
        REQUIRE(usable == 4096 + 8, "usable size of malloc(4000) is %zu, not its class's 4104", usable);
    uintptr_t freed = addr_of(p);
    free(p);
    unsigned char *q = opaque(malloc(3900));
    if (count > 0)
        REQUIRE(addr_of(q) == freed, "malloc(3900) after free of a 4000-byte block gave %p, not "
                "the cached %#lx", (void *)q, (unsigned long)freed);
    free(q);
    free(warm);

    /* 2. A bin holds at most tcache_count chunks (4112 bytes each, 64 KiB allow 15). The
     * bin is emptied first: its chunks are taken (and held) before counting starts. */
    enum { N = 20 };
    void *drained[N], *blocks[N];
    for (int i = 0; i < N; i++)
        REQUIRE((drained[i] = malloc(4000)) != NULL);
    size_t base = in_use();
    for (int i = 0; i < N; i++)
        REQUIRE((blocks[i] = malloc(4000)) != NULL);
    for (int i = 0; i < N; i++)
        free(blocks[i]);
    size_t cached = in_use() - base;
    size_t chunk = 4112, want = bin_after_frees(count, 15, grow, N) * chunk;
    REQUIRE(cached == want, "after freeing %d blocks of 4000 bytes, %zu bytes stay cached, "
            "expected %zu (%zu chunks of %zu)", N, cached, want, want / chunk, chunk);
    /* Take them back out, so that the next check starts from an empty bin. */
    for (int i = 0; i < N; i++)
        blocks[i] = malloc(4000);

    /* 3. Every class filled past its limit: the large bins together keep at most 1 MiB. */
    static void *many[40][16];
    base = in_use();
    size_t held = 0;
    for (unsigned c = 0; c < 40; c++)
        for (int i = 0; i < 16; i++) {
            REQUIRE((many[c][i] = malloc(class_chunk(c) - 16)) != NULL);
            held += malloc_usable_size(many[c][i]) + 8;
        }
    size_t before_free = in_use();
    for (unsigned c = 0; c < 40; c++)
        for (int i = 0; i < 16; i++)
            free(many[c][i]);
    size_t kept = in_use() > base ? in_use() - base : 0;
    for (int i = 0; i < N; i++) {
        free(blocks[i]);
        free(drained[i]);
    }
    /* What the rules keep, freeing in this order: each class's bin up to its limit, while
     * the bins together stay within the budget. */
    size_t expected = 0;
    for (unsigned c = 0; c < 40 && count > 0 && !grow; c++) {
        size_t limit = 65536 / class_chunk(c);
        limit = limit < 1 ? 1 : limit < count ? limit : count;
        for (size_t i = 0, in_bin = 0; i < 16; i++)
            if (in_bin < limit && expected + class_chunk(c) <= BUDGET) {
                expected += class_chunk(c);
                in_bin++;
            }
    }
    /* Growing bins also take chunks from the arena in batches on a miss (step 2 took
     * its blocks back out that way), so there the budget is the rule to check. */
    if (grow)
        REQUIRE(kept <= BUDGET, "after freeing %zu bytes over every class, %zu stay cached, "
                "more than the 1 MiB budget", held, kept);
    else
        REQUIRE(kept == expected, "after freeing %zu bytes over every class, %zu stay cached, "
                "expected %zu (per-class limits, 1 MiB in all)", held, kept, expected);
    printf("large_cache ok: tcache_count=%u usable(4000)=%zu bin-kept=%zu budget-kept=%zu "
           "of %zu freed (in use before %zu) allocator=%s\n", count, usable, cached, kept, held,
           before_free, allocator_object());
    return 0;
}
