/* hardened.c - the checks that keep classic heap-exploitation techniques from working
 * (tests/c/exploits/ is one program per technique) and, later in this file, hardened
 * mode. Each check is general: links and chunks must lie in our own memory and agree
 * with their neighbours' boundary tags, whatever technique forged them. */
#include "hardened.h"
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
