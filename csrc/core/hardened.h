/* hardened.h - the checks that keep the classic heap-exploitation techniques from
 * working (issue 16), and hardened mode's pieces: what the core's flows call into.
 * The logic lives in hardened.c; the flows (malloc.c, bins.c, tcache.c) only call. */
#ifndef PRM_HARDENED_H
#define PRM_HARDENED_H

#include "internal.h"

/* Could q be the fd or bk of free chunk p in one of av's doubly linked bins: a bin head
 * of av, or a chunk of av's segments that is free by its boundary tags (the P bit of the
 * chunk after it is clear), and not p itself? A fake free chunk built inside a live one
 * (unsafe unlink, house of einherjar, poison null byte) links to itself, to a global, or
 * to live chunks whose leftover pointers were rewritten: each fails here. Under av's lock. */
PRM_INTERNAL int prmi_link_leads_to_free(prm_arena *av, const prm_chunk *p, prm_chunk *q);

/* A header merged into a bigger free chunk is buried: its size word gets this value,
 * which no chunk has, so that a free (or realloc) through a stale pointer to it is named
 * as the double free it is instead of trusting a leftover header (house of botcake). */
#define PRM_BURIED_HEAD ((size_t)8)
static inline void bury_header(prm_chunk *p)
{
    if (PRM_HARDENING)
        store_size(p, PRM_BURIED_HEAD);
}

/* Unmap the chunk-start map's leaves (internal.h: prmi_chunk_claim) and empty the
 * quarantine: for a test that throws the whole heap away and starts again
 * (fuzz/fuzz_reset.c). */
PRM_INTERNAL void prmi_hardened_forget(void);

/* A chunk the thread cache is about to take without asking its arena (a large class,
 * tcache.c): the checks the arena's free would make. Its start must be a live chunk's in
 * the chunk-start map (else it went back to the arena: a double free), no live chunk may
 * start inside it (an enlarged size), and when its header says the chunk before it is
 * free, that chunk must be a free chunk of the arena's bins ending here (asked under the
 * arena's lock: it is the arena's). PRM_OK, or an error status, reported. The map is
 * read with atomics, without a lock. */
PRM_INTERNAL int prmi_cache_entry_sound(void *mem);

/* ---- Hardened mode (hardened=1, M_HARDENED) --------------------------------------------- */
/* free in hardened mode: zero-size blocks, the canary, then the quarantine. */
PRM_INTERNAL int prmi_quarantine_free(void *mem);
/* realloc in hardened mode: always a new block, the old one through the quarantine. */
PRM_INTERNAL void *prmi_hardened_realloc(void *oldmem, size_t bytes);
/* A zero-size block: a distinct address in pages that trap on any access. */
PRM_INTERNAL void *prmi_zero_block(void);
/* malloc_usable_size's first look in hardened mode: 0 for a zero-size block (and a block
 * in the quarantine, reported as `who`), 1 to go on. */
PRM_INTERNAL int prmi_hardened_usable(void *mem, const char *who);
/* Is mem a mapped block waiting in the quarantine (its pages closed)? */
PRM_INTERNAL int prmi_quarantined_mapped(const void *mem);
/* For the fault handler (faults.c), without a lock: does address lie in a zero-size
 * block (its block in *block), or in a mapped block waiting in the quarantine with its
 * pages closed, or the guard page after it (*mem, and the closed bytes in *length)? */
PRM_INTERNAL int prmi_zero_block_at(uintptr_t address, uintptr_t *block);
PRM_INTERNAL int prmi_quarantined_mapped_at(uintptr_t address, uintptr_t *mem, size_t *length);
/* faults.c: hardened mode's fault handler, installed once when hardened mode is set. */
PRM_INTERNAL void prmi_faults_install(void);
/* Check every block still in the quarantine for writes after free (at exit). */
PRM_INTERNAL void prmi_quarantine_check_all(void);
/* The quarantine's lock, for the fork handlers (threads.c). A leaf: nothing else is
 * taken while it is held. */
PRM_INTERNAL prm_lock *prmi_quarantine_lock(void);
/* free_sized's check: mem (aligned to `alignment`, 0 for any) is a block of `size` bytes
 * (SIZE_MAX: any), PRM_OK, or the mismatch is reported. prm_free_sized and the preload's exports use it. */
PRM_INTERNAL int prmi_sized_free_check(void *mem, size_t alignment, size_t size);
/* malloc.c: the canary's check and retirement before a free; the free after it. */
PRM_INTERNAL int prmi_canary_release(void *mem);
PRM_INTERNAL int prmi_free_released(void *mem);
PRM_INTERNAL int prmi_usable_size_checked(void *mem, const char *who, const char *overwritten, size_t *usable);

/* ---- The thread cache takes only our own chunks ------------------------------------------
 * The cache's fast paths trust no pointer outside its range: free takes a block into the
 * cache, and malloc follows a cached entry, only if it lies in the range the cache
 * remembers (its arena's newest segment; one subtraction, a rotate and a compare, which
 * also reject NULL and a misaligned pointer). Anything else goes out of line, where the
 * ownership map (pagemap.h) decides: a chunk of some arena of ours is served as usual;
 * a fake chunk on the stack or in a global (tcache house of spirit) goes to the arena's
 * free, which names it, and a cache link leading anywhere but our heaps (tcache
 * poisoning, whatever the target's alignment) is reported as corrupted. */
static inline int cache_range_holds(const prm_tcache *tc, const void *mem)
{
    if (!PRM_HARDENING)
        return mem != NULL && aligned_ok((uintptr_t)mem);
    uintptr_t offset = (uintptr_t)mem - tc->range_lo;
    return ((offset >> 4) | (offset << 60)) < tc->range_granules;
}

/* Is the chunk whose memory is mem (16-aligned) inside a heap segment of one of our
 * arenas, by the ownership map? Its header's page and its memory's, which may be the
 * next page: reading no memory, so any pointer may be asked about. */
PRM_INTERNAL int prmi_owned_by_an_arena(const void *mem);
/* free of mem outside the cache's range: NULL, a chunk of ours elsewhere (cached after
 * all), or anything else (to the arena's free, which reports it). */
PRM_INTERNAL int prmi_free_out_of_range(prm_tcache *tc, void *mem);
/* malloc of `bytes` whose cache bin holds an entry outside the range, or none. */
PRM_INTERNAL void *prmi_cache_pop_out_of_range(prm_tcache *tc, size_t bytes);
/* A cache entry outside the range: ours (then the range is looked at again)? */
PRM_INTERNAL int prmi_cache_entry_owned(prm_tcache *tc, const void *mem);
/* free of the chunk that already heads its cache bin, its key cleared. */
PRM_INTERNAL int prmi_free_cached_head(void *mem);
/* malloc.c: the cache's push, for a block known to be ours. */
PRM_INTERNAL int prmi_cache_free_owned(prm_tcache *tc, void *mem);

#endif
