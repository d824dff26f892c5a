/* large_cache.c - the thread cache's large classes (requests of 1 KiB to 32 KiB) under the
 * preloaded library, observed from outside through what malloc returns and through
 * mallinfo2's in-use bytes (cached chunks count as in use, as in glibc):
 *   - a request is rounded up to its class, so a freed block serves the next request of
 *     any size in that class, from the cache (the same address comes back);
 *   - a class's bin holds at most tcache_count chunks (and 64 KiB): freeing more sends
 *     the rest to the arena;
 *   - all of a thread's large bins hold at most 1 MiB;
 *   - with tcache_count=0 nothing is cached.
 * The expected tcache_count comes as the first argument (the test sets the option).
 *
 * usage: large_cache TCACHE_COUNT
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

int main(int argc, char **argv)
{
    prog_name = "large_cache";
    unsigned count = (unsigned)arg_ulong(argc, argv, 1, 7, 0, 1000, "TCACHE_COUNT");
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
    size_t chunk = 4112, want = (count < 15 ? count : 15) * chunk;
    REQUIRE(cached == want, "after freeing %d blocks of 4000 bytes, %zu bytes stay cached, "
            "expected %zu (%u chunks of %zu)", N, cached, want, count < 15 ? count : 15, chunk);
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
    for (unsigned c = 0; c < 40 && count > 0; c++) {
        size_t limit = 65536 / class_chunk(c);
        limit = limit < 1 ? 1 : limit < count ? limit : count;
        for (size_t i = 0, in_bin = 0; i < 16; i++)
            if (in_bin < limit && expected + class_chunk(c) <= BUDGET) {
                expected += class_chunk(c);
                in_bin++;
            }
    }
    REQUIRE(kept == expected, "after freeing %zu bytes over every class, %zu stay cached, "
            "expected %zu (per-class limits, 1 MiB in all)", held, kept, expected);
    printf("large_cache ok: tcache_count=%u usable(4000)=%zu bin-kept=%zu budget-kept=%zu "
           "of %zu freed (in use before %zu) allocator=%s\n", count, usable, cached, kept, held,
           before_free, allocator_object());
    return 0;
}
