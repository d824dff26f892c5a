/* hardened.c - the checks that keep classic heap-exploitation techniques from working
 * (tests/c/exploits/ is one program per technique) and, later in this file, hardened
 * mode. Each check is general: links and chunks must lie in our own memory and agree
 * with their neighbours' boundary tags, whatever technique forged them. */
#include "hardened.h"
#include "os.h"
#include "prm.h"

int prmi_link_leads_to_free(prm_arena *av, const prm_chunk *p, prm_chunk *q)
{
    uintptr_t a = (uintptr_t)q;
    uintptr_t bins = (uintptr_t)&av->bins[0];
    if (a >= bins && a < (uintptr_t)&av->bins[PRM_NBINS])
        return (a - bins) % sizeof(prm_chunk) == 0;
    if (q == p || !prmi_plausible_link(av, q))
        return 0;
    prm_segment *seg = prmi_segment_of(av, a);   /* plausible_link found it */
    size_t size = chunk_size(q);
    if (size < PRM_MINSIZE || !aligned_ok(size) || size > seg->end - a - PRM_CHUNK_HDR)
        return 0;
    return !inuse_at(q, size);
}

/* ---- The thread cache takes only our own chunks (hardened.h) ------------------------------ */

/* Is the chunk whose memory is mem inside a heap segment of one of our arenas, by the
 * ownership map? (Its header's page and its memory's, which may be the next page.) */
static int owned_by_an_arena(const void *mem)
{
    uintptr_t chunk = (uintptr_t)mem - PRM_CHUNK_HDR;
    return aligned_ok((uintptr_t)mem) && prmi_owner_is_arena(prmi_owner_of(chunk)) &&
           prmi_owner_is_arena(prmi_owner_of((uintptr_t)mem));
}

/* The cache's range becomes its thread's arena's newest segment as it stands now: read
 * without the lock, so the bounds may be a moment old, which only makes more pointers
 * take the out-of-line path (or, after a trim, lets the fast path read a header in
 * memory we no longer own, where no block of ours can be). */
static void refresh_range(prm_tcache *tc)
{
    prm_arena *av = prmi_self.arena;
    prm_segment *seg = av != NULL ? __atomic_load_n(&av->segments, __ATOMIC_ACQUIRE) : NULL;
    if (seg == NULL)
        return;
    uintptr_t lo = (uintptr_t)chunk2mem(seg->first);
    uintptr_t hi = __atomic_load_n(&seg->end, __ATOMIC_RELAXED);
    tc->range_lo = lo;
    tc->range_granules = hi > lo ? (hi - lo) >> 4 : 0;
}

int prmi_cache_entry_owned(prm_tcache *tc, const void *mem)
{
    if (!owned_by_an_arena(mem))
        return 0;
    refresh_range(tc);
    return 1;
}

PRM_NOINLINE int prmi_free_out_of_range(prm_tcache *tc, void *mem)
{
    if (mem == NULL)
        return PRM_OK;
    if (!prmi_cache_entry_owned(tc, mem))
        return prmi_free_to_arena(mem);   /* a mapped chunk, or not ours: it reports */
    return prmi_cache_free_owned(tc, mem);
}

PRM_NOINLINE void *prmi_cache_pop_out_of_range(prm_tcache *tc, size_t bytes)
{
    unsigned index = tcache_index(request2size(bytes));   /* not passed: one register less */
    prm_tcache_entry *e = tc->entries[index];
    if (e == NULL)
        return prmi_malloc_slow(bytes);
    if (!prmi_cache_entry_owned(tc, e))
        return prmi_cache_poisoned(tc, index, bytes);
    tc->entries[index] = tcache_next(e);
    tc->counts[index]--;
    e->key = 0;
    return e;
}

PRM_NOINLINE int prmi_free_cached_head(void *mem)
{
    return prmi_fail_pointer("free(): double free detected in tcache 2",
                             "the chunk already heads its bin in this thread's cache", mem);
}

/* ---- The chunk-start map -----------------------------------------------------------------
 * One bit per 16-byte granule of the address space, set where a chunk an arena handed
 * out starts (cached chunks count as handed out: the arena never sees them). Two levels
 * like the ownership map: a leaf covers 4 GiB (32 MiB of bits, mapped on first use with
 * MAP_NORESERVE, so only the pages of it that mark a heap cost memory: 1/128 of the heap).
 * A leaf the kernel refuses leaves its chunks unmarked: their checks find nothing, never
 * a false alarm. Bits are set and cleared with atomics: two arenas' chunks may share a
 * word where their segments meet. */
#define START_LEAF_SHIFT 32
#define START_ROOTS ((size_t)1 << (PRM_PAGEMAP_ADDRESS_BITS - START_LEAF_SHIFT))
#define START_LEAF_BYTES (((size_t)1 << (START_LEAF_SHIFT - 4)) / 8)
#define START_LEAF_MASK (((uintptr_t)1 << START_LEAF_SHIFT) - 1)

static uint64_t *start_leaves[START_ROOTS];

static uint64_t *start_leaf(uintptr_t addr, int make)
{
    uintptr_t root = addr >> START_LEAF_SHIFT;
    if (root >= START_ROOTS)
        return NULL;
    uint64_t *leaf = __atomic_load_n(&start_leaves[root], __ATOMIC_ACQUIRE);
    if (leaf != NULL || !make)
        return leaf;
    uint64_t *fresh = prm_os_map_metadata(START_LEAF_BYTES);
    if (fresh == NULL)
        return NULL;
    if (__atomic_compare_exchange_n(&start_leaves[root], &leaf, fresh, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
        return fresh;
    prm_os_unmap_metadata(fresh, START_LEAF_BYTES);   /* another arena made it first */
    return leaf;
}

/* Does a marked chunk start in [from, to) (both 16-aligned)? */
static int any_start_in(uintptr_t from, uintptr_t to)
{
    while (from < to) {
        uintptr_t leaf_end = (from | START_LEAF_MASK) + 1;
        uintptr_t end = to < leaf_end || leaf_end == 0 ? to : leaf_end;
        const uint64_t *leaf = start_leaf(from, 0);
        if (leaf != NULL) {
            size_t first = (from & START_LEAF_MASK) >> 4;
            size_t last = ((end - 1) & START_LEAF_MASK) >> 4;   /* inclusive */
            uint64_t mask = ~(uint64_t)0 << (first & 63);
            for (size_t w = first >> 6; w <= last >> 6; w++, mask = ~(uint64_t)0) {
                if (w == last >> 6)
                    mask &= ~(uint64_t)0 >> (63 - (last & 63));
                if (__atomic_load_n(&leaf[w], __ATOMIC_RELAXED) & mask)
                    return 1;
            }
        }
        from = end;
    }
    return 0;
}

static void mark_start(uintptr_t addr, int set)
{
    uint64_t *leaf = start_leaf(addr, set);
    if (leaf == NULL)
        return;
    size_t granule = (addr & START_LEAF_MASK) >> 4;
    uint64_t bit = (uint64_t)1 << (granule & 63);
    if (set)
        __atomic_fetch_or(&leaf[granule >> 6], bit, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&leaf[granule >> 6], ~bit, __ATOMIC_RELAXED);
}

void prmi_chunk_claim(prm_arena *av, prm_chunk *p)
{
    uintptr_t a = (uintptr_t)p;
    if (prm_unlikely(any_start_in(a + PRM_ALIGN, a + chunk_size(p))))
        prmi_fail_arena(av, "malloc(): chunk overlaps a live chunk",
                        "the chunk about to be handed out holds the start of a live one (a free chunk's size enlarged?)",
                        p);
    mark_start(a, 1);
}

void prmi_chunk_release(prm_arena *av, prm_chunk *p)
{
    uintptr_t a = (uintptr_t)p;
    if (prm_unlikely(any_start_in(a + PRM_ALIGN, a + chunk_size(p))))
        prmi_fail_arena(av, "free(): invalid size",
                        "the chunk's size reaches over the start of a live chunk (an overflow into its header?)", p);
    mark_start(a, 0);
}

void prmi_chunk_map_forget(void)
{
    for (size_t root = 0; root < START_ROOTS; root++) {
        uint64_t *leaf = __atomic_exchange_n(&start_leaves[root], NULL, __ATOMIC_ACQ_REL);
        if (leaf != NULL)
            prm_os_unmap_metadata(leaf, START_LEAF_BYTES);
    }
}
