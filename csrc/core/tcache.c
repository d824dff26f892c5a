/* tcache.c - the per-thread cache's slow side: its large classes (requests of 1 KiB to
 * 32 KiB, internal.h says what they are), popping and pushing them out of line, the
 * checks a cached entry passes before it is trusted, double frees of cached chunks, and
 * creating and giving back a thread's cache. The inline fast paths of small sizes live
 * in malloc.c (prm_malloc, prm_free), which tail-call what is here. */
#include <string.h>

#include "hardened.h"
#include "prm.h"

/* Class i's chunk size: its request, (1024 << i/8) + (i%8 + 1) * (128 << i/8), plus a
 * header's 16 bytes; then a sentinel one past the last class's chunks. */
static const uint32_t large_class_chunk[PRM_TCACHE_LARGE_CLASSES + 1] = {
    1168, 1296, 1424, 1552, 1680, 1808, 1936, 2064, 2320, 2576,
    2832, 3088, 3344, 3600, 3856, 4112, 4624, 5136, 5648, 6160,
    6672, 7184, 7696, 8208, 9232, 10256, 11280, 12304, 13328, 14352,
    15376, 16400, 18448, 20496, 22544, 24592, 26640, 28688, 30736, 32784,
    32800,
};

/* Class of a request r (1024 < r <= 32768), by (r - 1) / 128: the smallest class whose
 * request holds r. Every class's request is a multiple of 128, so the table is exact. */
static const uint8_t large_class_by_request[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9,
    10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 16, 16, 17, 17, 17, 17,
    18, 18, 18, 18, 19, 19, 19, 19, 20, 20, 20, 20, 21, 21, 21, 21, 22, 22, 22, 22,
    23, 23, 23, 23, 24, 24, 24, 24, 24, 24, 24, 24, 25, 25, 25, 25, 25, 25, 25, 25,
    26, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27, 27, 27, 27, 27, 28, 28, 28, 28,
    28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29, 29, 30, 30, 30, 30, 30, 30, 30, 30,
    31, 31, 31, 31, 31, 31, 31, 31, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32,
    32, 32, 32, 32, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33,
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 35, 35, 35, 35,
    35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 36, 36, 36, 36, 36, 36, 36, 36,
    36, 36, 36, 36, 36, 36, 36, 36, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37,
    37, 37, 37, 37, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38,
    39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39,
};

/* Class of a chunk of `size` bytes (1168 <= size <= 32784), by (size - 16) / 128: the
 * largest class whose chunk fits in it. */
static const uint8_t large_class_by_chunk[257] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8,
    9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 15, 15, 16, 16, 16, 16,
    17, 17, 17, 17, 18, 18, 18, 18, 19, 19, 19, 19, 20, 20, 20, 20, 21, 21, 21, 21,
    22, 22, 22, 22, 23, 23, 23, 23, 23, 23, 23, 23, 24, 24, 24, 24, 24, 24, 24, 24,
    25, 25, 25, 25, 25, 25, 25, 25, 26, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27,
    27, 27, 27, 27, 28, 28, 28, 28, 28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29, 29,
    30, 30, 30, 30, 30, 30, 30, 30, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32,
    33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 34, 34, 34, 34,
    34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 35, 35, 35, 35, 35, 35, 35, 35,
    35, 35, 35, 35, 35, 35, 35, 35, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36,
    36, 36, 36, 36, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37,
    38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 39,
};

static inline unsigned large_class_of_request(size_t request)
{
    return large_class_by_request[(request - 1) >> 7];
}

/* The cache bin a free chunk of `size` bytes goes to: its small bin, the largest large
 * class it can serve, or PRM_TCACHE_BINS for none. */
static inline unsigned tcache_bin_of_chunk(size_t size)
{
    if (size <= PRM_TCACHE_MAX_SIZE)
        return size >= PRM_MINSIZE ? tcache_index(size) : PRM_TCACHE_BINS;
    if (size < large_class_chunk[0] || size > PRM_TCACHE_LARGE_MAX_SIZE)
        return PRM_TCACHE_BINS;
    return PRM_TCACHE_SMALL_BINS + large_class_by_chunk[(size - 2 * PRM_SIZE_SZ) >> 7];
}

/* How far past its class's chunk size a chunk filed under the class may be: the next
 * class's chunk size less this one's (the last class: one chunk size only). */
static const uint16_t large_class_span[PRM_TCACHE_LARGE_CLASSES] = {
    128, 128, 128, 128, 128, 128, 128, 256, 256, 256, 256, 256, 256, 256, 256, 512, 512, 512, 512, 512,
    512, 512, 512, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 16,
};

/* Does a chunk of `size` belong in large bin `index`? (Its size may have been damaged
 * while it was cached.) */
static inline int large_bin_holds(unsigned index, size_t size)
{
    unsigned class_index = index - PRM_TCACHE_SMALL_BINS;
    return size - large_class_chunk[class_index] < large_class_span[class_index];
}

/* Is e, a cache bin's entry, one the slow paths may trust? Aligned, keyed to this cache,
 * its link sane and its header's size that of bin `index` (an overflow into a cached
 * chunk's header). The fast path checks only the link it follows (tcache_link_sane). */
static inline int cache_entry_sane(prm_tcache *tc, prm_tcache_entry *e, unsigned index)
{
    return aligned_ok((uintptr_t)e) &&
           (!PRM_HARDENING || ((cache_range_holds(tc, e) || prmi_cache_entry_owned(tc, e)) &&
                               tcache_sealed(tc, e) && tcache_link_sane(tcache_next(e)) &&
                               (index < PRM_TCACHE_SMALL_BINS
                                    ? tcache_index(chunk_size(mem2chunk(e))) == index
                                    : large_bin_holds(index, chunk_size(mem2chunk(e))))));
}

/* How many chunks of class i fit PRM_TCACHE_LARGE_BIN_BYTES (at least one):
 * 64 KiB / large_class_chunk[i], so that no division runs on the free path. */
static const uint8_t large_class_capacity[PRM_TCACHE_LARGE_CLASSES] = {
    56, 50, 46, 42, 39, 36, 33, 31, 28, 25, 23, 21, 19, 18, 16, 15, 14, 12, 11, 10,
    9, 9, 8, 7, 7, 6, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2, 2, 2, 1,
};

/* The chunk size cache bin `index` holds (a large class's smallest). */
static inline size_t bin_chunk_size(unsigned index)
{
    return index < PRM_TCACHE_SMALL_BINS ? PRM_MINSIZE + (size_t)index * PRM_ALIGN
                                         : large_class_chunk[index - PRM_TCACHE_SMALL_BINS];
}

static inline unsigned min_unsigned(unsigned a, unsigned b) { return a < b ? a : b; }

/* The most bin `index` may ever hold with base count `base`: its byte cap, and with
 * growth on, PRM_TCACHE_GROWTH x base; never less than base (glibc's count), and at
 * least one for a large class. */
static unsigned bin_cap(unsigned index, unsigned base)
{
    unsigned by_bytes = index < PRM_TCACHE_SMALL_BINS
                            ? (unsigned)(PRM_TCACHE_SMALL_BIN_BYTES / bin_chunk_size(index))
                            : large_class_capacity[index - PRM_TCACHE_SMALL_BINS];
    unsigned grown = params()->tcache_grow ? base * PRM_TCACHE_GROWTH : base;
    if (index >= PRM_TCACHE_SMALL_BINS)
        return min_unsigned(by_bytes, grown);
    return by_bytes > base ? min_unsigned(by_bytes, grown) : base;
}

/* Every bin's limit back to where it starts: tcache_count (capped for large classes).
 * Done when a cache is made, and when tcache_count changed since (mallopt). */
static void reset_limits(prm_tcache *tc)
{
    unsigned base = (unsigned)params()->tcache_count;
    tc->base_count = (int)base;
    tc->small_limit_bytes = 0;
    for (unsigned i = 0; i < PRM_TCACHE_BINS; i++) {
        tc->limits[i] = (uint16_t)(i < PRM_TCACHE_SMALL_BINS ? base : min_unsigned(base, bin_cap(i, base)));
        if (i < PRM_TCACHE_SMALL_BINS)
            tc->small_limit_bytes += tc->limits[i] * bin_chunk_size(i);
    }
}

/* A cache bin whose entry failed its checks: report it, and if the check action lets
 * the program go on, drop the bin's contents (they cannot be trusted). Slow path. */
static PRM_NOINLINE void drop_poisoned_bin(prm_tcache *tc, unsigned index)
{
    prm_tcache_entry *e = tc->entries[index];
    if (PRM_HARDENING && !cache_range_holds(tc, e) && !prmi_cache_entry_owned(tc, e))
        prmi_fail_block("malloc(): tcache link corrupted",
                        "a thread-cache link leads outside our heaps (a write after free?)", e);
    else if (!aligned_ok((uintptr_t)e))
        prmi_fail_block("malloc(): unaligned tcache chunk detected",
                        "a thread-cache link decodes to a misaligned address", e);
    else if (!tcache_link_sane(tcache_next(e)))
        prmi_fail_block("malloc(): tcache link corrupted",
                        "a cached chunk's link was overwritten (a write after free?)", e);
    else
        prmi_fail_block("malloc(): memory corruption (tcache)",
                        "a cached chunk's key or size is not its cache bin's", e);
    if (index >= PRM_TCACHE_SMALL_BINS) {   /* what the bin held, as far as it can be told */
        size_t held = (size_t)tc->counts[index] * bin_chunk_size(index);
        tc->large_bytes = held < tc->large_bytes ? tc->large_bytes - held : 0;
    }
    tc->entries[index] = NULL;
    tc->counts[index] = 0;
}

/* Pop a chunk from this thread's cache bin `index` (small or large), or NULL. Every
 * entry is checked before it is trusted: this is no inline fast path. */
static prm_tcache_entry *cache_bin_pop(prm_tcache *tc, unsigned index)
{
    prm_tcache_entry *e = tc->entries[index];
    if (e == NULL)
        return NULL;
    if (prm_unlikely(!cache_entry_sane(tc, e, index))) {
        drop_poisoned_bin(tc, index);
        return NULL;
    }
    tc->entries[index] = tcache_next(e);
    tc->counts[index]--;
    if (index >= PRM_TCACHE_SMALL_BINS)
        tc->large_bytes -= chunk_size(mem2chunk(e));   /* checked: its bin's size, as pushed */
    e->key = 0;
    return e;
}

/* A request of chunk size *nb in the large classes' range: pop its class's bin, or round
 * *nb up to the class's chunk size for the arena and return NULL. */
prm_tcache_entry *prmi_large_class_pop(prm_tcache *tc, size_t *nb)
{
    unsigned class_index = large_class_of_request(*nb - 2 * PRM_SIZE_SZ);
    prm_tcache_entry *e = cache_bin_pop(tc, PRM_TCACHE_SMALL_BINS + class_index);
    if (e == NULL)
        *nb = large_class_chunk[class_index];
    return e;
}

PRM_NOINLINE void *prmi_cache_poisoned(prm_tcache *tc, unsigned index, size_t bytes)
{
    drop_poisoned_bin(tc, index);
    return prmi_malloc_slow(bytes);
}

/* Pop a chunk for `bytes` from this thread's cache, or NULL. */
void *prmi_cache_pop(size_t bytes)
{
    prm_tcache *tc = prmi_self.tcache;
    if (tc <= PRM_TCACHE_DISABLED || bytes > PRM_TCACHE_LARGE_MAX_REQUEST)
        return NULL;
    size_t nb = request2size(bytes);
    return bytes <= PRM_TCACHE_MAX_REQUEST ? cache_bin_pop(tc, tcache_index(nb))
                                           : prmi_large_class_pop(tc, &nb);
}

/* A request of a large cache class (1 KiB < bytes <= 32 KiB): pop its class's bin, or on
 * a miss ask the arena for the class's chunk size. This is the large classes' hot path,
 * so it checks what the small fast path checks (the link it follows) plus the size the
 * bin holds, not all of cache_entry_sane. Out of line, so the small fast path stays as
 * it is; a tail call from it. */
PRM_NOINLINE void *prmi_malloc_large_class(size_t bytes)
{
    prm_tcache *tc = prmi_self.tcache;
    if (prm_unlikely(tc <= PRM_TCACHE_DISABLED))
        return prmi_malloc_slow(bytes);
    unsigned class_index = large_class_of_request(bytes);   /* a class's request holds bytes */
    unsigned index = PRM_TCACHE_SMALL_BINS + class_index;
    prm_tcache_entry *e = tc->entries[index];
    if (e == NULL)
        return prmi_cache_fill(tc, index, large_class_chunk[class_index]);
    if (prm_unlikely(!cache_range_holds(tc, e) && !prmi_cache_entry_owned(tc, e)))
        return prmi_cache_poisoned(tc, index, bytes);
    prm_tcache_entry *next = tcache_next(e);
    size_t size = chunk_size(mem2chunk(e));
    if (prm_unlikely(!tcache_link_sane(next) || !large_bin_holds(index, size)))
        return prmi_cache_poisoned(tc, index, bytes);
    tc->entries[index] = next;
    tc->counts[index]--;
    tc->large_bytes -= size;
    e->key = 0;
    return e;
}

/* Is mem, whose key says it is cached in this thread, really in its cache bin? User
 * data that merely looks like a key is not. Slow path. */
static PRM_NOINLINE int in_this_cache(void *mem)
{
    prm_tcache *tc = prmi_self.tcache;
    prm_tcache_entry *e = mem;
    unsigned index = tcache_bin_of_chunk(chunk_size(mem2chunk(mem)));
    unsigned steps = 0;
    if (index >= PRM_TCACHE_BINS)
        return 0;
    for (prm_tcache_entry *q = tc->entries[index];
         q != NULL && aligned_ok((uintptr_t)q) && tcache_sealed(tc, q) && steps <= tc->counts[index];
         q = tcache_next(q), steps++)
        if (q == e)
            return 1;
    return 0;
}

/* Is mem a block freed into this thread's cache? It looks in use to the boundary tags,
 * so realloc and malloc_usable_size ask here. Its header is read only once the ownership
 * map puts it in a heap of ours (a cached chunk is a heap chunk): a wild pointer is then
 * named by the caller's own checks instead of faulting here. */
int prmi_freed_into_this_cache(void *mem)
{
    prm_tcache *tc = prmi_self.tcache;
    return tc > PRM_TCACHE_DISABLED && prmi_owned_by_an_arena(mem) &&
           chunk_size(mem2chunk(mem)) <= PRM_TCACHE_LARGE_MAX_SIZE && tcache_sealed(tc, mem) &&
           in_this_cache(mem);
}

/* free of a chunk (its header's `size`, flags but M cleared) that is no small cache size,
 * with this thread's cache tc: a chunk of a large cache class goes to its large bin when
 * the bin and the thread's budget have room (the same key makes a second free of it a
 * double free); the rest goes to its arena or the kernel. Out of line: a tail call from
 * free's inline path. */
PRM_NOINLINE int prmi_free_large_class(prm_tcache *tc, void *mem, size_t size)
{
    /* Out of the classes' range, or not a heap chunk's size: mmapped (the M bit stays in
     * size, so it is misaligned) or a tombstone (0). */
    if (prm_unlikely(size - large_class_chunk[0] > PRM_TCACHE_LARGE_MAX_SIZE - large_class_chunk[0] ||
                     !aligned_ok(size)))
        return prmi_free_to_arena(mem);
    unsigned index = PRM_TCACHE_SMALL_BINS + large_class_by_chunk[(size - 2 * PRM_SIZE_SZ) >> 7];
    prm_tcache_entry *e = mem;
    if (prm_unlikely(tcache_sealed(tc, e)))
        return prmi_free_keyed(mem);
    /* The checks free in the arena makes first (glibc's names), so that caching a chunk of
     * these sizes hides no corruption the arena would have seen: the next chunk must say
     * this one is in use, and have a plausible size. */
    size_t next_head = load_size(chunk_at(mem2chunk(mem), size));   /* no lock: chunk.h */
    if (prm_unlikely(!(next_head & PRM_PREV_INUSE)))
        return prmi_fail_pointer("double free or corruption (!prev)",
                                 "the next chunk's header says this chunk is free", mem);
    if (prm_unlikely((next_head & ~PRM_FLAG_BITS) < PRM_CHUNK_HDR ||
                     !aligned_ok(next_head & ~PRM_FLAG_BITS)))
        return prmi_fail_pointer("free(): invalid next size (normal)",
                                 "the next chunk's header holds an impossible size", mem);
    if (PRM_HARDENING) {
        int sound = prmi_cache_entry_sound(mem);
        if (prm_unlikely(sound != PRM_OK))
            return sound;
    }
    if (prm_unlikely(tc->large_bytes + size > PRM_TCACHE_LARGE_BUDGET))
        return prmi_free_to_arena(mem);
    if (prm_unlikely(tc->counts[index] >= tc->limits[index]))
        return prmi_cache_full(tc, mem);
    tcache_link(tc, e, tc->entries[index]);
    tc->entries[index] = e;
    tc->counts[index]++;
    tc->large_bytes += size;
    return PRM_OK;
}

/* Push e on bin `index`, which has room. */
static void cache_push(prm_tcache *tc, unsigned index, prm_tcache_entry *e)
{
    tcache_link(tc, e, tc->entries[index]);
    tc->entries[index] = e;
    tc->counts[index]++;
    if (index >= PRM_TCACHE_SMALL_BINS)
        tc->large_bytes += chunk_size(mem2chunk(e));
}

/* Raise bin `index`'s limit (double it, up to its cap), if it may grow, ran dry since
 * it last grew, and the small bins' budget allows. 1 if it was raised. */
static int raise_limit(prm_tcache *tc, unsigned index)
{
    unsigned limit = tc->limits[index];
    unsigned cap = bin_cap(index, (unsigned)tc->base_count);
    uint64_t bit = (uint64_t)1 << (index & 63);
    /* A bin that only ever fills (a thread that frees what others allocate) would just
     * hold more memory: it grows only if it also ran dry since it last grew. */
    if (limit >= cap || !(tc->missed[index >> 6] & bit))
        return 0;
    tc->missed[index >> 6] &= ~bit;
    unsigned raised = min_unsigned(limit < 1 ? 1 : 2 * limit, cap);
    if (index < PRM_TCACHE_SMALL_BINS) {
        size_t more = (size_t)(raised - limit) * bin_chunk_size(index);
        if (tc->small_limit_bytes + more > PRM_TCACHE_SMALL_BUDGET)
            return 0;
        tc->small_limit_bytes += more;
    }
    tc->limits[index] = (uint16_t)raised;
    __atomic_fetch_add(&prmi_state.tcache_raises, 1, __ATOMIC_RELAXED);
    return 1;
}

/* Give `count` chunks of bin `index` back to their arenas, in one batch. */
static void drain_bin(prm_tcache *tc, unsigned index, unsigned count)
{
    void *batch[PRM_TCACHE_BATCH_MAX];
    unsigned taken = 0;
    if (count > PRM_TCACHE_BATCH_MAX)
        count = PRM_TCACHE_BATCH_MAX;
    while (taken < count) {
        prm_tcache_entry *e = cache_bin_pop(tc, index);
        if (e == NULL)
            break;
        batch[taken++] = e;
    }
    if (taken > 0) {
        prmi_arena_free_many(batch, taken);
        __atomic_fetch_add(&prmi_state.tcache_drains, 1, __ATOMIC_RELAXED);
    }
}

/* free of mem, keyed for nothing and checked as free's paths check it, into bin `index`
 * which is at its limit: raise the limit if the bin may grow, else (growth on) give half
 * the bin back to the arena in one batch; then cache mem if there is room, as glibc
 * does with its fixed count (growth off: mem goes to the arena). Also where a change of tcache_count
 * (mallopt) reaches this thread's cache. Slow path of free. */
PRM_NOINLINE int prmi_cache_full(prm_tcache *tc, void *mem)
{
    unsigned index = tcache_bin_of_chunk(chunk_size(mem2chunk(mem)));   /* not passed: see free */
    if (prm_unlikely(tc->base_count != params()->tcache_count)) {
        reset_limits(tc);
        while (tc->counts[index] >= tc->limits[index] && tc->counts[index] > 0)
            drain_bin(tc, index, tc->counts[index] - tc->limits[index] + 1);
        if (tc->limits[index] == 0)
            return prmi_free_to_arena(mem);
    }
    if (tc->counts[index] >= tc->limits[index] && !raise_limit(tc, index) && params()->tcache_grow)
        drain_bin(tc, index, tc->limits[index] / 2 > 0 ? tc->limits[index] / 2 : 1);
    if (tc->counts[index] >= tc->limits[index])
        return prmi_free_to_arena(mem);
    cache_push(tc, index, mem);
    return PRM_OK;
}

/* A miss in bin `index` for a chunk of nb bytes: from the arena, and if the bin's limit
 * has grown past tcache_count (the program uses this size in bursts), a quarter of the
 * limit more in the same lock hold, cached for the next requests. Slow path of malloc. */
PRM_NOINLINE void *prmi_cache_fill(prm_tcache *tc, unsigned index, size_t nb)
{
    tc->missed[index >> 6] |= (uint64_t)1 << (index & 63);
    unsigned want = tc->limits[index] > tc->base_count ? tc->limits[index] / 4 : 1;
    if (want <= 1)
        return prmi_malloc_in_some_arena(nb);
    void *batch[PRM_TCACHE_BATCH_MAX];
    if (want > PRM_TCACHE_BATCH_MAX)
        want = PRM_TCACHE_BATCH_MAX;
    if (index >= PRM_TCACHE_SMALL_BINS && tc->large_bytes + want * nb > PRM_TCACHE_LARGE_BUDGET)
        return prmi_malloc_in_some_arena(nb);
    unsigned got = prmi_arena_malloc_many(nb, batch, want);
    if (got == 0)
        return prmi_malloc_in_some_arena(nb);   /* the main arena's retry, glibc's */
    for (unsigned i = 1; i < got; i++) {
        /* The arena may hand out a little more than nb (a remainder too small to split). */
        if (tc->counts[index] < tc->limits[index] &&
            tcache_bin_of_chunk(chunk_size(mem2chunk(batch[i]))) == index)
            cache_push(tc, index, batch[i]);
        else
            prmi_arena_free_many(&batch[i], 1);
    }
    __atomic_fetch_add(&prmi_state.tcache_fills, 1, __ATOMIC_RELAXED);
    return batch[0];
}

/* free of a cached size whose next header is damaged (next_head_damaged): name what it
 * says. */
PRM_NOINLINE int prmi_free_next_damaged(void *mem)
{
    size_t next_head = load_size(next_chunk(mem2chunk(mem)));
    if (!(next_head & PRM_PREV_INUSE))
        return prmi_fail_pointer("double free or corruption (!prev)",
                                 "the next chunk's header says this chunk is free (freed before, or a "
                                 "write past the block)", mem);
    return prmi_fail_pointer("free(): invalid next size (tcache)",
                             "the next chunk's header holds an impossible size (an overflow past the block?)",
                             mem);
}

/* free of a chunk whose key says it is in this cache: a double free if it is. */
PRM_NOINLINE int prmi_free_keyed(void *mem)
{
    if (in_this_cache(mem))
        return prmi_fail_pointer("free(): double free detected in tcache 2",
                                 "the chunk is already in this thread's cache", mem);
    ((prm_tcache_entry *)mem)->key = 0;
    return prm_free(mem);
}

/* Could e be an entry of this thread's cache bin `index`? Read only once its pages are
 * known to be a heap's (the ownership map), so a link overwritten with anything cannot
 * make the check fault. */
static int cached_entry_intact(prm_tcache *tc, const prm_tcache_entry *e, unsigned index)
{
    return prmi_owned_by_an_arena(e) && e->key == (uintptr_t)tc &&
           tcache_bin_of_chunk(chunk_size(mem2chunk((void *)e))) == index;
}

void prmi_tcache_check(void)
{
    prm_tcache *tc = prmi_self.tcache;
    if (tc <= PRM_TCACHE_DISABLED)
        return;
    for (unsigned index = 0; index < PRM_TCACHE_BINS; index++) {
        prm_tcache_entry *e = tc->entries[index], *linked_from = NULL;
        for (unsigned k = 0; k < tc->counts[index]; k++) {
            if (e == NULL || !cached_entry_intact(tc, e, index)) {
                /* Name the chunk written over: this one if it is ours (its key), else the
                 * one whose link led here. */
                prmi_fail_block("free(): write after free detected (tcache)",
                                "a cached chunk's link or key was overwritten after it was freed",
                                prmi_owned_by_an_arena(e) || linked_from == NULL ? (void *)e
                                                                                 : (void *)linked_from);
                return;
            }
            linked_from = e;
            e = tcache_next(e);
        }
    }
}

/* Give everything this thread's cache holds back to the arenas (malloc_trim): batches of
 * each bin, under one lock hold each. The limits stay as the program taught them. */
void prmi_tcache_flush(void)
{
    prm_tcache *tc = prmi_self.tcache;
    if (tc <= PRM_TCACHE_DISABLED)
        return;
    for (unsigned i = 0; i < PRM_TCACHE_BINS; i++)
        while (tc->entries[i] != NULL) {
            unsigned before = tc->counts[i];
            drain_bin(tc, i, PRM_TCACHE_BATCH_MAX);
            if (tc->counts[i] == before)
                break;   /* a poisoned bin was dropped (reported), or nothing moved */
        }
}

/* A thread's cache, or PRM_TCACHE_DISABLED. With the canary on there is none: every
 * free must reach the canary's check, which the cache's fast path has no room for (and
 * the canary can only be switched while nothing, a cache included, is allocated). */
prm_tcache *prmi_tcache_create(void)
{
    if (params()->tcache_count <= 0 || params()->canary)
        return PRM_TCACHE_DISABLED;
    prm_tcache *tc = prmi_malloc_in_some_arena(request2size(sizeof(prm_tcache)));
    if (tc == NULL)
        return PRM_TCACHE_DISABLED;
    memset(tc, 0, sizeof *tc);
    reset_limits(tc);
    return tc;
}

void prmi_tcache_destroy(prm_tcache *tc)
{
    for (unsigned i = 0; i < PRM_TCACHE_BINS; i++) {
        prm_tcache_entry *e = tc->entries[i];
        unsigned left = tc->counts[i];
        /* A bad link ends the walk: what follows it is lost, not followed. */
        while (e != NULL && left-- > 0 && cache_entry_sane(tc, e, i)) {
            prm_tcache_entry *next = tcache_next(e);
            e->key = 0;
            prmi_free_to_arena(e);
            e = next;
        }
    }
    prmi_free_to_arena(tc);
}
