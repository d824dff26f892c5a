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

/* The smallest class whose request holds `request` bytes (1024 < request <= 32768). */
static inline unsigned large_class_of_request(size_t request)
{
    size_t x = request - 1;
    unsigned top = 63 - (unsigned)__builtin_clzll(x);
    return (top - 10) * 8 + (unsigned)((x >> (top - 3)) & 7);
}

/* The cache bin a free chunk of `size` bytes goes to: its small bin, the largest large
 * class it can serve, or PRM_TCACHE_BINS for none. */
static inline unsigned tcache_bin_of_chunk(size_t size)
{
    if (size <= PRM_TCACHE_MAX_SIZE)
        return size >= PRM_MINSIZE ? tcache_index(size) : PRM_TCACHE_BINS;
    if (size < large_class_chunk[0] || size > PRM_TCACHE_LARGE_MAX_SIZE)
        return PRM_TCACHE_BINS;
    unsigned class_index = large_class_of_request(size - 2 * PRM_SIZE_SZ);
    if (large_class_chunk[class_index] > size)
        class_index--;
    return PRM_TCACHE_SMALL_BINS + class_index;
}

/* Does a chunk of `size` belong in large bin `index`? (Its size may have been damaged
 * while it was cached.) */
static inline int large_bin_holds(unsigned index, size_t size)
{
    unsigned class_index = index - PRM_TCACHE_SMALL_BINS;
    return size - large_class_chunk[class_index] <
           (size_t)(large_class_chunk[class_index + 1] - large_class_chunk[class_index]);
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

/* How many chunks large bin `index` may hold: tcache_count, fewer for big classes. */
static inline unsigned large_bin_limit(unsigned index)
{
    unsigned by_bytes = large_class_capacity[index - PRM_TCACHE_SMALL_BINS];
    unsigned limit = (unsigned)params()->tcache_count;
    return by_bytes < limit ? by_bytes : limit;
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
        size_t held = (size_t)tc->counts[index] * large_class_chunk[index - PRM_TCACHE_SMALL_BINS];
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
    unsigned class_index = large_class_of_request(request2size(bytes) - 2 * PRM_SIZE_SZ);
    unsigned index = PRM_TCACHE_SMALL_BINS + class_index;
    prm_tcache_entry *e = tc->entries[index];
    if (e == NULL)
        return prmi_malloc_in_some_arena(large_class_chunk[class_index]);
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

/* realloc of a block freed into this thread's cache: it looks in use to the tags. */
int prmi_realloc_of_cached(void *mem)
{
    prm_tcache *tc = prmi_self.tcache;
    return tc > PRM_TCACHE_DISABLED && aligned_ok((uintptr_t)mem) &&
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
    unsigned index = tcache_bin_of_chunk(size);
    if (prm_unlikely(index < PRM_TCACHE_SMALL_BINS || index >= PRM_TCACHE_BINS || !aligned_ok(size)))
        return prmi_free_to_arena(mem);   /* mmapped (M bit), a tombstone, or past the classes */
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
    if (tc->counts[index] < large_bin_limit(index) &&
        tc->large_bytes + size <= PRM_TCACHE_LARGE_BUDGET) {
        tcache_link(tc, e, tc->entries[index]);
        tc->entries[index] = e;
        tc->counts[index]++;
        tc->large_bytes += size;
        return PRM_OK;
    }
    return prmi_free_to_arena(mem);
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
