/* malloc.c - the allocation flows: malloc, free, calloc, realloc and the aligned
 * variants, as the public prm_ entry points and the int_ workers that run under the
 * arena lock.
 *
 * Before the arena, the thread's cache (internal.h): prm_malloc pops a small bin inline;
 * a request of a large cache class (1 KiB to 32 KiB) is rounded up to its class and pops
 * that bin out of line (tcache.c); free pushes a small chunk inline and a large class's
 * out of line (tcache.c). A free into an arena the thread does not use goes onto that
 * arena's remote-free stack without its lock; the next holder of the lock frees what
 * waits there before it does anything else (remote.c).
 *
 * malloc (prmi_int_malloc), for a chunk size nb:
 *   1. fast bins: nb <= max_fast and its fast bin is non-empty: pop, done.
 *   2. small bins: nb is a small size and its bin is non-empty: take the oldest, done.
 *      A large nb first consolidates the fast bins (fragments could merge into a fit).
 *   3. the unsorted bin, oldest first: a small nb takes a slice of the last remainder
 *      when it is the only chunk there; an exact fit is taken; every other chunk is
 *      sorted into its small or large bin.
 *   4. a large nb takes the smallest fitting chunk of its own large bin (best fit);
 *      the rest of it goes to the unsorted bin.
 *   5. the binmap finds the next non-empty bin above; its chunk is split and the rest
 *      goes to the unsorted bin (and becomes the last remainder for small requests).
 *   6. split the top chunk; if top is too small and fast chunks exist, consolidate
 *      and retry from 3.
 *   7. otherwise ask the OS: nb at or above the mmap threshold gets its own mapping;
 *      else the heap grows with brk (see prmi_grow_heap) and top is split.
 *
 * free (prmi_int_free), for a heap chunk p (mmapped chunks are unmapped directly):
 *   1. a chunk of at most max_fast goes to the front of its fast bin, unmerged.
 *   2. otherwise it merges with a free chunk below (backward) and above (forward);
 *      merged with top, it becomes top; else it goes to the unsorted bin.
 *   3. if the merged chunk is 64 KiB or more, the fast bins are consolidated, and if top
 *      now exceeds the trim threshold the break is lowered (prmi_systrim).
 */
#include "prm.h"
#include "internal.h"
#include "hardened.h"

#include <string.h>

static inline size_t arena_bit(prm_arena *av) { return av->index == 0 ? 0 : PRM_NON_MAIN; }

static inline size_t mmap_threshold(void)
{
    return __atomic_load_n(&params()->mmap_threshold, __ATOMIC_RELAXED);
}

static inline size_t trim_threshold(void)
{
    return __atomic_load_n(&params()->trim_threshold, __ATOMIC_RELAXED);
}

static inline void alloc_perturb(void *mem, size_t n)
{
    int byte = params()->perturb_byte;
    if (prm_unlikely(byte != 0))
        memset(mem, byte ^ 0xff, n);
}

static inline void free_perturb(void *mem, size_t n)
{
    int byte = params()->perturb_byte;
    if (prm_unlikely(byte != 0))
        memset(mem, byte, n);
}

/* Top must end exactly where the arena's newest segment ends: a size written over top's
 * header (an overflow out of the last block) is caught before top is split or grown. */
static inline void check_top(prm_arena *av, const char *check)
{
    size_t size = top_size(av);
    if (!PRM_HARDENING) {   /* glibc's check alone */
        if (prm_unlikely(size > av->system_bytes))
            prmi_fail_arena(av, check, "the top chunk is larger than the arena's memory", av->top);
        return;
    }
    if (prm_unlikely(size > av->system_bytes || (uintptr_t)av->top + size != av->segments->end))
        prmi_fail_arena(av, check, "the top chunk does not end where the arena's newest segment ends",
                        av->top);
}

/* ---- Helpers of the malloc flow -------------------------------------------------------- */

/* Carve nb bytes off the front of free chunk `victim` (already unlinked) of `size`
 * bytes. A remainder of at least MINSIZE goes to the unsorted bin; a smaller one stays
 * with the chunk. Returns the remainder or NULL. */
static prm_chunk *split_chunk(prm_arena *av, prm_chunk *victim, size_t size, size_t nb)
{
    size_t remainder_size = size - nb;
    if (remainder_size < PRM_MINSIZE) {
        set_inuse_at(victim, size);
        store_size(victim, victim->size | arena_bit(av));
        return NULL;
    }
    prm_chunk *remainder = chunk_at(victim, nb);
    set_head(victim, nb | PRM_PREV_INUSE | arena_bit(av));
    set_head(remainder, remainder_size | PRM_PREV_INUSE | arena_bit(av));
    set_foot(remainder, remainder_size);
    prmi_unsorted_push(av, remainder, remainder_size);
    return remainder;
}

static void *split_top(prm_arena *av, size_t nb)
{
    prm_chunk *victim = av->top;
    size_t size = top_size(av);
    prm_chunk *remainder = chunk_at(victim, nb);
    av->top = remainder;
    set_head(victim, nb | PRM_PREV_INUSE | arena_bit(av));
    set_head(remainder, (size - nb) | PRM_PREV_INUSE | arena_bit(av));
    return chunk2mem(victim);
}

/* The smallest bin index >= from whose binmap bit is set, or PRM_NBINS. */
static unsigned next_marked_bin(prm_arena *av, unsigned from)
{
    while (from < PRM_NBINS) {
        unsigned word = from >> 6;
        uint64_t bits = av->binmap[word] & (~(uint64_t)0 << (from & 63));
        if (bits != 0)
            return (word << 6) + (unsigned)__builtin_ctzll(bits);
        from = (word + 1) << 6;
    }
    return PRM_NBINS;
}

/* Step 7: nothing in the arena fits. Slow path. */
static PRM_NOINLINE void *sysmalloc(prm_arena *av, size_t nb)
{
    if (nb >= mmap_threshold() || (av->index != 0 && !prmi_fits_heap(nb))) {
        prm_chunk *p = prmi_mmap_chunk(nb);
        if (p != NULL)
            return chunk2mem(p);
        /* Over the mmap limit or refused: try the heap, as glibc does. */
    }
    if (!prmi_grow_heap(av, nb))
        return NULL;
    return split_top(av, nb);
}

/* Step 3: sort the unsorted bin, serving an exact fit or a last-remainder slice. */
static void *drain_unsorted(prm_arena *av, size_t nb)
{
    prm_chunk *unsorted = unsorted_bin(av);
    prm_chunk *victim;
    unsigned iterations = 0;

    while ((victim = unsorted->bk) != unsorted) {
        CHECK_LINK(av, victim, "an unsorted link points outside the heap");
        prm_chunk *bck = victim->bk;
        CHECK_LINK(av, bck, "an unsorted chunk's bk points outside the heap");
        size_t size = chunk_size(victim);
        prm_chunk *next = chunk_at(victim, size);

        if (prm_unlikely(victim->size <= PRM_CHUNK_HDR || size > av->system_bytes))
            prmi_fail_arena(av, "malloc(): invalid size (unsorted)",
                            "an unsorted chunk has an impossible size", victim);
        /* next may be a fence post (16 bytes, P clear since victim is free): < not <=. */
        if (prm_unlikely(next->size < PRM_CHUNK_HDR || chunk_size(next) > av->system_bytes))
            prmi_fail_arena(av, "malloc(): invalid next size (unsorted)",
                            "the chunk after an unsorted chunk has an impossible size", victim);
        if (prm_unlikely(next->prev_size != size))
            prmi_fail_arena(av, "malloc(): mismatching next->prev_size (unsorted)",
                            "an unsorted chunk's footer disagrees with its size", victim);
        if (prm_unlikely(bck->fd != victim || victim->fd != unsorted))
            prmi_fail_arena(av, "malloc(): unsorted double linked list corrupted",
                            "the unsorted bin's links do not point back", victim);
        if (prm_unlikely(prev_inuse(next)))
            prmi_fail_arena(av, "malloc(): invalid next->prev_inuse (unsorted)",
                            "a chunk in the unsorted bin is marked in use", victim);

        /* A small request and the last remainder alone in the bin: slice it, which keeps
         * consecutive small requests next to each other. */
        if (in_smallbin_range(nb) && bck == unsorted && victim == av->last_remainder &&
            size > nb + PRM_MINSIZE) {
            size_t remainder_size = size - nb;
            prm_chunk *remainder = chunk_at(victim, nb);
            unsorted->bk = unsorted->fd = remainder;
            remainder->bk = remainder->fd = unsorted;
            if (!in_smallbin_range(remainder_size))
                remainder->fd_nextsize = remainder->bk_nextsize = NULL;
            av->last_remainder = remainder;
            set_head(victim, nb | PRM_PREV_INUSE | arena_bit(av));
            set_head(remainder, remainder_size | PRM_PREV_INUSE | arena_bit(av));
            set_foot(remainder, remainder_size);
            return chunk2mem(victim);
        }

        unsorted->bk = bck;
        bck->fd = unsorted;

        if (size == nb) {
            set_inuse_at(victim, size);
            store_size(victim, victim->size | arena_bit(av));
            return chunk2mem(victim);
        }
        prmi_place_in_bin(av, victim, size);
        if (++iterations >= 10000)
            break;
    }
    return NULL;
}

/* Step 4: best fit inside the large bin of nb. */
static void *take_from_large_bin(prm_arena *av, unsigned index, size_t nb)
{
    prm_chunk *bin = bin_at(av, index);
    prm_chunk *victim = bin->fd;
    CHECK_LINK(av, victim, "a large bin's first link points outside the heap");
    if (victim == bin || chunk_size(victim) < nb)
        return NULL;
    /* Walk the size ring up from the smallest size to the first that fits. */
    size_t steps = 0;
    do {
        victim = victim->bk_nextsize;
        CHECK_LINK(av, victim, "a large chunk's bk_nextsize points outside the heap");
        if (prm_unlikely(++steps > list_step_limit(av)))
            prmi_fail_arena(av, "malloc(): largebin double linked list corrupted (nextsize)",
                            "a large bin's size ring never reaches a size that fits", victim);
    } while (chunk_size(victim) < nb);
    /* Prefer the second chunk of that size: the size ring need not be rerouted. */
    CHECK_LINK(av, victim->fd, "a large chunk's fd points outside the heap");
    if (victim != bin->bk && victim->fd->size == victim->size)
        victim = victim->fd;
    size_t size = chunk_size(victim);
    prmi_unlink_chunk(av, victim);
    split_chunk(av, victim, size, nb);
    return chunk2mem(victim);
}

/* Step 5: the next non-empty bin above `index`; any of its chunks fits. */
static void *take_from_larger_bin(prm_arena *av, unsigned index, size_t nb)
{
    for (unsigned i = next_marked_bin(av, index + 1); i < PRM_NBINS; i = next_marked_bin(av, i + 1)) {
        prm_chunk *bin = bin_at(av, i);
        prm_chunk *victim = bin->bk;
        if (victim == bin) {
            unmark_bin(av, i);   /* the bit was stale */
            continue;
        }
        CHECK_LINK(av, victim, "a bin's last link points outside the heap");
        size_t size = chunk_size(victim);
        prmi_unlink_chunk(av, victim);
        prm_chunk *remainder = split_chunk(av, victim, size, nb);
        if (remainder != NULL && in_smallbin_range(nb))
            av->last_remainder = remainder;
        return chunk2mem(victim);
    }
    return NULL;
}

/* Pop the first chunk of a fast bin, checking it, or NULL. */
static prm_chunk *fastbin_pop(prm_arena *av, unsigned index)
{
    prm_chunk *victim = av->fastbins[index];
    if (victim == NULL)
        return NULL;
    CHECK_LINK(av, victim, "a fast-bin link points outside the heap");
    if (prm_unlikely(!aligned_ok((uintptr_t)victim)))
        prmi_fail_arena(av, "malloc(): unaligned fastbin chunk detected",
                        "a fast-bin link points at a misaligned address", victim);
    if (prm_unlikely(fastbin_index(chunk_size(victim)) != index))
        prmi_fail_arena(av, "malloc(): memory corruption (fast)",
                        "a fast-bin chunk's size does not belong to its bin", victim);
    if (prm_unlikely(!fastbin_sealed(victim)))
        prmi_fail_arena(av, "malloc(): fastbin link corrupted",
                        "a freed chunk's link was overwritten (a write after free?)", victim);
    av->fastbins[index] = fastbin_next(victim);
    return victim;
}

/* Take the oldest chunk of small bin `index` (chunks of exactly nb), marked in use, or
 * NULL. */
static prm_chunk *smallbin_take(prm_arena *av, unsigned index, size_t nb)
{
    prm_chunk *bin = bin_at(av, index);
    prm_chunk *victim = bin->bk;
    if (victim == bin)
        return NULL;
    CHECK_LINK(av, victim, "a small bin's last link points outside the heap");
    prm_chunk *bck = victim->bk;
    CHECK_LINK(av, bck, "a small-bin chunk's bk points outside the heap");
    if (prm_unlikely(bck->fd != victim))
        prmi_fail_arena(av, "malloc(): smallbin double linked list corrupted",
                        "a small bin's last chunk is not linked back", victim);
    /* calloc clears, and the caller trusts, the chunk's own size: it must be the bin's. */
    if (prm_unlikely(chunk_size(victim) != nb))
        prmi_fail_arena(av, "malloc(): memory corruption (small)",
                        "a small-bin chunk's size does not belong to its bin", victim);
    set_inuse_at(victim, nb);
    store_size(victim, victim->size | arena_bit(av));
    bin->bk = bck;
    bck->fd = bin;
    return victim;
}

/* Stashing, as glibc does: having found a chunk of size nb in a fast or small bin, move
 * more of that size into this thread's cache under the same lock, so that the next
 * mallocs of that size need no lock at all. Stashed chunks count as in use. */
static prm_tcache *stash_target(size_t nb, unsigned *index)
{
    prm_tcache *tc = prmi_self.tcache;
    if (tc <= PRM_TCACHE_DISABLED || nb > PRM_TCACHE_MAX_SIZE)
        return NULL;
    *index = tcache_index(nb);
    return tc->counts[*index] < (unsigned)params()->tcache_count ? tc : NULL;
}

static void stash(prm_arena *av, prm_tcache *tc, unsigned index, prm_chunk *p)
{
    account_alloc(av, p);
    prm_tcache_entry *e = chunk2mem(p);
    tcache_link(tc, e, tc->entries[index]);
    tc->entries[index] = e;
    tc->counts[index]++;
}

static void stash_fast(prm_arena *av, unsigned fast_index, size_t nb)
{
    unsigned index;
    prm_tcache *tc = stash_target(nb, &index);
    prm_chunk *p;
    while (tc != NULL && tc->counts[index] < (unsigned)params()->tcache_count &&
           (p = fastbin_pop(av, fast_index)) != NULL)
        stash(av, tc, index, p);
}

static void stash_small(prm_arena *av, unsigned bin_index, size_t nb)
{
    unsigned index;
    prm_tcache *tc = stash_target(nb, &index);
    prm_chunk *p;
    while (tc != NULL && tc->counts[index] < (unsigned)params()->tcache_count &&
           (p = smallbin_take(av, bin_index, nb)) != NULL)
        stash(av, tc, index, p);
}

void *prmi_int_malloc(prm_arena *av, size_t nb)
{
    /* 1. Fast bins. */
    if (nb <= params()->max_fast) {
        unsigned index = fastbin_index(nb);
        prm_chunk *victim = fastbin_pop(av, index);
        if (victim != NULL) {
            stash_fast(av, index, nb);
            return chunk2mem(victim);
        }
    }

    /* 2. Small bins (oldest chunk first), or consolidation before a large search. */
    unsigned index;
    if (in_smallbin_range(nb)) {
        index = smallbin_index(nb);
        prm_chunk *victim = smallbin_take(av, index, nb);
        if (victim != NULL) {
            stash_small(av, index, nb);
            return chunk2mem(victim);
        }
    } else {
        index = largebin_index(nb);
        if (av->have_fastchunks)
            prmi_consolidate_below_top(av);
    }

    for (;;) {
        void *mem = drain_unsorted(av, nb);                                  /* 3 */
        if (mem == NULL && !in_smallbin_range(nb))
            mem = take_from_large_bin(av, index, nb);                          /* 4 */
        if (mem == NULL)
            mem = take_from_larger_bin(av, index, nb);                         /* 5 */
        if (mem != NULL)
            return mem;

        /* 6. Top. */
        if (av->top != NULL) {
            size_t size = top_size(av);
            check_top(av, "malloc(): corrupted top size");
            if (size >= nb + PRM_MINSIZE)
                return split_top(av, nb);
        }
        if (!av->have_fastchunks)
            return sysmalloc(av, nb);                                           /* 7 */
        prmi_consolidate(av);
    }
}

/* ---- free -------------------------------------------------------------------------------- */

/* Free a heap chunk that is not going to a fast bin: merge it with free neighbours and
 * put the result in the unsorted bin, or into top. Returns the merged size. */
size_t prmi_free_merge(prm_arena *av, prm_chunk *p)
{
    size_t size = chunk_size(p);
    prm_chunk *next = chunk_at(p, size);

    if (prm_unlikely(p == av->top))
        prmi_fail_arena(av, "double free or corruption (top)", "the chunk freed is the top chunk", p);
    prm_segment *seg = prmi_segment_of(av, (uintptr_t)p);
    if (prm_unlikely(seg == NULL || (uintptr_t)next >= seg->end))
        prmi_fail_arena(av, "double free or corruption (out)",
                        "the chunk's end lies outside the heap segment that holds it", p);
    if (prm_unlikely(!prev_inuse(next)))
        prmi_fail_arena(av, "double free or corruption (!prev)",
                        "the chunk is not marked in use by the chunk after it", p);
    size_t next_size = chunk_size(next);
    if (prm_unlikely(next->size <= PRM_CHUNK_HDR || next_size >= av->system_bytes ||
                     (next != av->top && next_size > seg->end - (uintptr_t)next - PRM_CHUNK_HDR)))
        prmi_fail_arena(av, "free(): invalid next size (normal)",
                        "the chunk after the one freed has an impossible size", p);

    free_perturb(chunk2mem(p), size - PRM_CHUNK_HDR);

    if (!prev_inuse(p)) {
        size_t prev_size = p->prev_size;
        if (prm_unlikely(!aligned_ok(prev_size) || prev_size < PRM_MINSIZE ||
                         prev_size > (uintptr_t)p - (uintptr_t)segment_first_chunk(seg)))
            prmi_fail_arena(av, "corrupted size vs. prev_size while consolidating",
                            "prev_size is misaligned, too small, or reaches below the segment", p);
        prm_chunk *absorbed = p;
        p = chunk_below(p, prev_size);
        if (prm_unlikely(chunk_size(p) != prev_size))
            prmi_fail_arena(av, "corrupted size vs. prev_size while consolidating",
                            "the free chunk below has a different size than prev_size says", p);
        size += prev_size;
        prmi_unlink_chunk(av, p);
        bury_header(absorbed);
    }

    if (next != av->top) {
        if (!inuse_at(next, next_size)) {
            prmi_unlink_chunk(av, next);
            size += next_size;
            bury_header(next);
        } else {
            clear_inuse_at(next, 0);
        }
        set_head(p, size | PRM_PREV_INUSE | arena_bit(av));
        set_foot(p, size);
        prmi_unsorted_push(av, p, size);
    } else {
        size += next_size;
        set_head(p, size | PRM_PREV_INUSE | arena_bit(av));
        av->top = p;
        bury_header(next);
    }
    return size;
}

void prmi_int_free(prm_arena *av, prm_chunk *p)
{
    size_t size = chunk_size(p);

    if (size <= params()->max_fast) {
        prm_chunk *next = chunk_at(p, size);
        if (prm_unlikely(next->size <= PRM_CHUNK_HDR || chunk_size(next) >= av->system_bytes))
            prmi_fail_arena(av, "free(): invalid next size (fast)",
                            "the chunk after the one freed has an impossible size", p);
        free_perturb(chunk2mem(p), size - PRM_CHUNK_HDR);
        /* A fast chunk looks in use to the tags, so prm_check reads its canary: one the
         * core frees itself (memalign's and realloc's leftovers) must say "freed" too. */
        if (prm_unlikely(params()->canary))
            prmi_canary_retire(chunk2mem(p));
        unsigned index = fastbin_index(size);
        prm_chunk *old = av->fastbins[index];
        if (prm_unlikely(old == p))
            prmi_fail_arena(av, "double free or corruption (fasttop)",
                            "the chunk is already first in its fast bin", p);
        fastbin_link(p, old);
        av->fastbins[index] = p;
        av->have_fastchunks = 1;
        return;
    }

    size = prmi_free_merge(av, p);
    if (size >= PRM_CONSOLIDATION_THRESHOLD) {
        if (av->have_fastchunks)
            prmi_consolidate(av);
        if (top_size(av) >= trim_threshold())
            prmi_auto_trim(av);
    }
}

/* ---- realloc and memalign workers ---------------------------------------------------------- */

/* Resize heap chunk oldp to hold nb bytes: shrink in place, grow into top or a free
 * neighbour, or move. Returns the new memory or NULL (oldp untouched). */
static void *int_realloc(prm_arena *av, prm_chunk *oldp, size_t oldsize, size_t nb)
{
    prm_chunk *next = chunk_at(oldp, oldsize);
    size_t next_size = chunk_size(next);
    prm_segment *seg = prmi_segment_of(av, (uintptr_t)oldp);   /* in_our_heap found it */
    if (prm_unlikely(next->size <= PRM_CHUNK_HDR || next_size >= av->system_bytes ||
                     (next != av->top && next_size > seg->end - (uintptr_t)next - PRM_CHUNK_HDR)))
        prmi_fail_arena(av, "realloc(): invalid next size",
                        "the chunk after the one reallocated has an impossible size", oldp);
    if (prm_unlikely(!prev_inuse(next)))
        prmi_fail_arena(av, "realloc(): invalid pointer",
                        "the chunk reallocated is not marked in use", oldp);

    prm_chunk *newp = oldp;
    size_t newsize = oldsize;

    if (oldsize < nb) {
        if (next == av->top)
            check_top(av, "realloc(): corrupted top size");
        if (next == av->top && oldsize + next_size >= nb + PRM_MINSIZE) {
            /* Grow into top. */
            set_head_size(oldp, nb | arena_bit(av));
            av->top = chunk_at(oldp, nb);
            set_head(av->top, (oldsize + next_size - nb) | PRM_PREV_INUSE | arena_bit(av));
            return chunk2mem(oldp);
        }
        if (next != av->top && !inuse_at(next, next_size) && oldsize + next_size >= nb) {
            /* Grow into the free chunk above. */
            newsize = oldsize + next_size;
            prmi_unlink_chunk(av, next);
        } else {
            /* Move. */
            void *newmem = prmi_int_malloc(av, nb);
            if (newmem == NULL)
                return NULL;
            prm_chunk *q = mem2chunk(newmem);
            if (q == next) {
                /* malloc handed out the chunk right above (it had been a fast chunk): take
                 * it over instead of copying. */
                newsize = oldsize + chunk_size(q);
            } else {
                memcpy(newmem, chunk2mem(oldp), oldsize - PRM_SIZE_SZ);
                prmi_int_free(av, oldp);
                return newmem;
            }
        }
    }

    /* Shrink to nb, freeing the tail if it can stand as a chunk of its own. */
    size_t remainder_size = newsize - nb;
    if (remainder_size < PRM_MINSIZE) {
        set_head_size(newp, newsize | arena_bit(av));
        set_inuse_at(newp, newsize);
    } else {
        prm_chunk *remainder = chunk_at(newp, nb);
        set_head_size(newp, nb | arena_bit(av));
        set_head(remainder, remainder_size | PRM_PREV_INUSE | arena_bit(av));
        set_inuse_at(remainder, remainder_size);
        prmi_int_free(av, remainder);
    }
    return chunk2mem(newp);
}

/* Over-allocate, then cut the chunk so that its memory starts on an `alignment`
 * boundary; the leading and trailing cuts are freed. alignment is a power of two > 16. */
static void *int_memalign(prm_arena *av, size_t alignment, size_t nb)
{
    void *mem = prmi_int_malloc(av, nb + alignment + PRM_MINSIZE);
    if (mem == NULL)
        return NULL;
    prm_chunk *p = mem2chunk(mem);

    if (((uintptr_t)mem & (alignment - 1)) != 0) {
        uintptr_t aligned = align_up((uintptr_t)mem, alignment);
        prm_chunk *newp = mem2chunk((void *)aligned);
        if ((uintptr_t)newp - (uintptr_t)p < PRM_MINSIZE)
            newp = chunk_at(newp, alignment);
        size_t lead = (uintptr_t)newp - (uintptr_t)p;
        if (chunk_is_mmapped(p))
            return chunk2mem(prmi_mmapped_shift(p, lead));
        size_t newsize = chunk_size(p) - lead;
        set_head(newp, newsize | PRM_PREV_INUSE | arena_bit(av));
        set_inuse_at(newp, newsize);
        set_head_size(p, lead | arena_bit(av));
        prmi_int_free(av, p);
        p = newp;
    }

    if (!chunk_is_mmapped(p)) {
        size_t size = chunk_size(p);
        if (size > nb + PRM_MINSIZE) {
            prm_chunk *remainder = chunk_at(p, nb);
            set_head(remainder, (size - nb) | PRM_PREV_INUSE | arena_bit(av));
            set_head_size(p, nb | arena_bit(av));
            set_inuse_at(remainder, size - nb);
            prmi_int_free(av, remainder);
        }
    }
    return chunk2mem(p);
}

/* ---- Public entry points ------------------------------------------------------------------- */

/* malloc from one arena, under its lock. */
static void *arena_malloc(prm_arena *av, size_t nb)
{
    ARENA_ENTER(av, return NULL);
    prmi_drain_if_pending(av);
    void *mem = prmi_int_malloc(av, nb);
    if (mem != NULL)
        account_alloc(av, mem2chunk(mem));
    ARENA_LEAVE(av);
    return mem;
}

/* Up to `count` chunks of nb bytes from one arena, in one lock hold; how many. A
 * separate function so that nothing of the caller's lives across ARENA_ENTER's setjmp. */
static unsigned arena_malloc_many(prm_arena *av, size_t nb, void **out, unsigned count)
{
    ARENA_ENTER(av, return 0);
    prmi_drain_if_pending(av);
    unsigned got = 0;
    while (got < count) {
        void *mem = prmi_int_malloc(av, nb);
        if (mem == NULL)
            break;
        account_alloc(av, mem2chunk(mem));
        out[got++] = mem;
    }
    ARENA_LEAVE(av);
    return got;
}

/* The thread cache's batch fill (tcache.c): up to `count` chunks of nb bytes from the
 * thread's arena; how many (0: the caller falls back to malloc's usual path). */
unsigned prmi_arena_malloc_many(size_t nb, void **out, unsigned count)
{
    prm_arena *av = thread_arena();
    return av != NULL && !av->abandoned ? arena_malloc_many(av, nb, out, count) : 0;
}

/* Free chunks of arena av, each one of free's checks passed (they come out of a thread
 * cache, checked as they were popped), in one lock hold. */
static void arena_free_many(prm_arena *av, void **mems, unsigned count)
{
    ARENA_ENTER(av, return);
    prmi_drain_if_pending(av);
    for (unsigned i = 0; i < count; i++) {
        prm_chunk *p = mem2chunk(mems[i]);
        if (prm_unlikely(!prmi_in_our_heap(av, p))) {
            prmi_fail_pointer("free(): invalid pointer", "the chunk lies in no heap segment of ours", mems[i]);
            continue;
        }
        account_free(av, p);
        prmi_int_free(av, p);
    }
    ARENA_LEAVE(av);
}

/* The thread cache's batch drain (tcache.c): chunks of this thread's arena are freed
 * under one lock hold; any other (cached here after a free from this thread) takes
 * free's usual way, which knows about other arenas and remote frees. */
void prmi_arena_free_many(void **mems, unsigned count)
{
    prm_arena *own = prmi_self.arena;
    void *mine[PRM_TCACHE_BATCH_MAX];
    unsigned n = 0;
    for (unsigned i = 0; i < count; i++) {
        prm_chunk *p = mem2chunk(mems[i]);
        if (own != NULL && n < PRM_TCACHE_BATCH_MAX && !chunk_is_mmapped(p) && prmi_arena_of(p) == own)
            mine[n++] = mems[i];
        else
            prmi_free_to_arena(mems[i]);
    }
    if (n > 0 && !own->abandoned)
        arena_free_many(own, mine, n);
}

/* The thread's arena; if it cannot serve a request, the main arena (glibc's
 * arena_get_retry), unless the first failure was corruption. */
void *prmi_malloc_in_some_arena(size_t nb)
{
    prm_arena *av = thread_arena();
    void *mem = av != NULL ? arena_malloc(av, nb) : NULL;
    prm_arena *main = &prmi_state.main_arena;
    if (mem == NULL && av != main && (av == NULL || !av->corrupt) && !main->abandoned)
        mem = arena_malloc(main, nb);
    return mem;
}

/* Slow path of malloc: everything but a small cache hit. A thread's first cacheable
 * request creates its cache; a request of a large cache class is rounded up to its class
 * and served from the cache's large bin when it can. */
PRM_NOINLINE void *prmi_malloc_slow(size_t bytes)
{
    size_t nb;
    if (prm_unlikely(!checked_request2size(bytes, &nb))) {
        errno = ENOMEM;
        return NULL;
    }
    if (nb <= PRM_TCACHE_LARGE_MAX_SIZE) {
        prm_tcache *tc = prmi_self.tcache;
        if (tc == PRM_TCACHE_NONE)
            tc = prmi_self.tcache = prmi_tcache_create();
        if (nb > PRM_TCACHE_MAX_SIZE && tc > PRM_TCACHE_DISABLED) {
            prm_tcache_entry *e = prmi_large_class_pop(tc, &nb);
            if (e != NULL)
                return e;
        }
        if (nb <= PRM_TCACHE_MAX_SIZE && tc > PRM_TCACHE_DISABLED)
            return prmi_cache_fill(tc, tcache_index(nb), nb);
    }
    return prmi_malloc_in_some_arena(nb);
}

/* malloc with M_PERTURB or the canary on: the request grows by the canary, the memory
 * is filled and stamped. Slow path. */
static PRM_NOINLINE void *malloc_debug(size_t bytes)
{
    size_t extra = params()->canary ? PRM_CANARY_EXTRA : 0;
    if (prm_unlikely(bytes > PRM_MAX_REQUEST - extra)) {
        errno = ENOMEM;
        return NULL;
    }
    if (prm_unlikely(params()->hardened && bytes == 0))
        return prmi_zero_block();
    void *mem = prmi_cache_pop(bytes + extra);
    if (mem == NULL)
        mem = prmi_malloc_slow(bytes + extra);
    if (mem != NULL) {
        alloc_perturb(mem, bytes);
        if (extra != 0)
            prmi_canary_stamp(mem, bytes);
    }
    return mem;
}

/* The fast path pops this thread's cache: no lock, no call but tail calls, so the
 * compiler saves no registers. A large class's request goes to tcache.c's
 * prmi_malloc_large_class; everything else to prmi_malloc_slow (malloc_debug when
 * M_PERTURB or the canary is on). */
void *prm_malloc(size_t bytes)
{
    if (prm_likely(bytes <= PRM_TCACHE_MAX_REQUEST && !params()->debug)) {
        prm_tcache *tc = prmi_self.tcache;
        if (prm_likely(tc > PRM_TCACHE_DISABLED)) {
            unsigned index = request_tcache_index(bytes);
            prm_tcache_entry *e = tc->entries[index];
            if (prm_unlikely(!cache_range_holds(tc, e)))   /* NULL too: hardened.h */
                return prmi_cache_pop_out_of_range(tc, bytes);
            {
                prm_tcache_entry *next = tcache_next(e);
                tc->entries[index] = next;
                tc->counts[index]--;
                e->key = 0;
                return e;
            }
        }
    }
    if (prm_unlikely(params()->debug))
        return malloc_debug(bytes);
    if (bytes - (PRM_TCACHE_MAX_REQUEST + 1) < PRM_TCACHE_LARGE_MAX_REQUEST - PRM_TCACHE_MAX_REQUEST)
        return prmi_malloc_large_class(bytes);
    return prmi_malloc_slow(bytes);
}

/* Does the ownership map put mem inside a heap segment of some arena? */
static int in_some_heap(const void *mem)
{
    return prmi_owner_is_arena(prmi_owner_of((uintptr_t)mem));
}

/* Is p, a chunk claiming a non-main arena, inside a heap whose header (at p's address
 * rounded down to PRM_HEAP_MAX) names an arena that lives in that heap's owner's pages?
 * The map is asked before the heap header is read. */
static int nonmain_chunk_owned(prm_chunk *p)
{
    uintptr_t heap = (uintptr_t)p & ~(uintptr_t)(PRM_HEAP_MAX - 1);
    unsigned owner = prmi_owner_of(heap);
    if (!prmi_owner_is_arena(owner) || owner == prmi_arena_owner(0) || prmi_owner_of((uintptr_t)p) != owner)
        return 0;
    prm_arena *av = ((prm_segment *)heap)->arena;
    return prmi_owner_of((uintptr_t)av) == owner && prmi_arena_owner(av->index) == owner;
}

static prm_chunk *reject_pointer(const char *who, const char *why, void *mem)
{
    prmi_fail_pointer(who, why, mem);
    return NULL;
}

static prm_chunk *reject_unmapped(const char *who, void *mem)
{
    return reject_pointer(who[0] == 'f' ? "free(): double free detected (munmapped chunk)" : who,
                          "the block's mapping was already given back to the kernel", mem);
}

/* Is mem inside one of our heaps, or a live mapped block, as far as our own lists say
 * (reading no header)? Reports (as `who`) and returns 0 when not; in *found what the
 * mapping registry said, if it was asked. */
static int looked_up(void *mem, const char *who, enum prmi_mapped *found)
{
    int in_heap = in_some_heap((char *)mem - PRM_CHUNK_HDR);
    if (!in_heap)
        *found = prmi_mmapped_lookup(mem);
    if (*found == PRMI_MAPPED_GONE)
        return reject_unmapped(who, mem) != NULL;
    if (*found == PRMI_MAPPED_UNKNOWN && !in_heap)
        return reject_pointer(who, "the pointer is neither a live mapped block nor inside a heap of ours",
                              mem) != NULL;
    return 1;
}

/* Checks every pointer handed back to us must pass before its chunk is touched further.
 * Returns the chunk, or NULL after reporting. */
static prm_chunk *chunk_for_pointer(void *mem, const char *who)
{
    if (prm_unlikely(!aligned_ok((uintptr_t)mem)))
        return reject_pointer(who, "the pointer is not 16-byte aligned, so malloc never returned it", mem);
    enum prmi_mapped found = PRMI_MAPPED_UNKNOWN;
    /* A header that may lie in memory unmapped since (a freed mmapped chunk) is looked up
     * before it is read; in checked mode (the cffi build) every header is. */
    if (PRM_CHECK_LINKS && !looked_up(mem, who, &found))
        return NULL;
    /* Without the full look-up, the ownership map still says, before the header is read,
     * whether its page is ours at all: a pointer into an inaccessible mapping, or far
     * beyond the heap, is reported instead of faulting here. */
    if (!PRM_CHECK_LINKS && prm_unlikely(prmi_owner_of((uintptr_t)mem - PRM_CHUNK_HDR) == PRM_OWNER_NONE)) {
        if (prmi_mmapped_lookup(mem) == PRMI_MAPPED_GONE)
            return reject_unmapped(who, mem);
        return reject_pointer(who, "the pointer lies in no heap segment and no mapped block of ours", mem);
    }
    prm_chunk *p = mem2chunk(mem);
    size_t size = chunk_size(p);
    if (prm_unlikely(load_size(p) == PRM_BURIED_HEAD))   /* hardened.h */
        return reject_pointer(who[0] == 'f' ? "free(): double free detected (merged chunk)" : who,
                              "the chunk was freed and merged into its neighbour since", mem);
    if (prm_unlikely((uintptr_t)p > (uintptr_t)0 - size || size < PRM_MINSIZE || !aligned_ok(size)))
        return reject_pointer(who, "the chunk header holds an impossible size", mem);
    /* An M bit sends free to a mapping header found through prev_size, which a damaged
     * or forged header could point anywhere: the registry must know the chunk first. */
    if (prm_unlikely(chunk_is_mmapped(p) &&
                     ((PRM_HARDENING && found != PRMI_MAPPED_LIVE && prmi_mmapped_lookup(mem) != PRMI_MAPPED_LIVE) ||
                      !prmi_mmapped_chunk_valid(p))))
        return reject_pointer(who, "the chunk claims its own mapping but no such mapping is ours", mem);
    if (prm_unlikely(!chunk_is_mmapped(p) && chunk_non_main(p) && !nonmain_chunk_owned(p)))
        return reject_pointer(who, "the chunk claims a non-main arena that does not exist", mem);
    return p;
}

/* Does heap chunk p, with its size, lie inside one of av's segments? A pointer into
 * memory we never handed out (another allocator's heap, a stack, a global) fails here
 * before its "header" is trusted any further. Under the arena lock. */
int prmi_in_our_heap(prm_arena *av, prm_chunk *p)
{
    unsigned owner = prmi_arena_owner(av->index);
    uintptr_t a = (uintptr_t)p;
    if (prm_unlikely(prmi_owner_of(a) != owner))
        return 0;
    /* The map speaks for whole pages. A chunk whose page, the page before it and the page
     * of the next chunk's header are all av's lies inside one of av's segments past its
     * record (segments end on page boundaries); one near a segment's edge is checked
     * against the segment itself: a non-main heap's is found from the address, the main
     * arena's few by search. */
    size_t size = chunk_size(p);
    if (prm_likely(size < ((size_t)1 << 47) && prmi_owner_of(a + size) == owner &&
                   prmi_owner_of(a - ((uintptr_t)1 << PRM_PAGEMAP_PAGE_SHIFT)) == owner))
        return 1;
    prm_segment *seg = av->index != 0 ? (prm_segment *)((uintptr_t)p & ~(uintptr_t)(PRM_HEAP_MAX - 1))
                                      : prmi_segment_of(av, (uintptr_t)p);
    return seg != NULL && seg->arena == av && (uintptr_t)p >= (uintptr_t)segment_first_chunk(seg) &&
           chunk_size(p) < seg->end - (uintptr_t)p;
}

/* The dynamic mmap threshold (glibc): freeing an mmapped chunk larger than the threshold
 * shows the program uses such sizes for long, so serve them from the heap from now on,
 * and trim only when twice that is free at the top. */
static void adjust_thresholds_after_munmap(size_t size)
{
    prm_params *mp = params();
    if (!__atomic_load_n(&mp->no_dyn_threshold, __ATOMIC_RELAXED) && size > mmap_threshold() &&
        size <= PRM_DEFAULT_MMAP_THRESHOLD_MAX) {
        __atomic_store_n(&mp->mmap_threshold, size, __ATOMIC_RELAXED);
        __atomic_store_n(&mp->trim_threshold, 2 * size, __ATOMIC_RELAXED);
    }
}

/* free of a heap chunk, under the arena lock; a separate function so that no local
 * variable of the caller lives across ARENA_ENTER's setjmp. */
static int free_heap_chunk(prm_chunk *p, void *mem)
{
    prm_arena *av = prmi_arena_of(p);
    if (prm_unlikely(av->abandoned))
        return PRM_OK;   /* fork child: the arena's owner died mid-update; let the chunk be */
    if (PRM_REMOTE_FREES && av != prmi_self.arena)
        return prmi_push_remote_free(av, mem);
    ARENA_ENTER(av, return PRM_ERR_CORRUPTION);
    prmi_drain_if_pending(av);
    if (prm_unlikely(!prmi_in_our_heap(av, p))) {
        ARENA_LEAVE(av);
        return prmi_fail_pointer("free(): invalid pointer", "the chunk lies in no heap segment of ours", mem);
    }
    account_free(av, p);
    prmi_int_free(av, p);
    ARENA_LEAVE(av);
    return PRM_OK;
}

/* free without the thread cache: to the chunk's arena, or back to the kernel. With the
 * canary on there are no thread caches, so every free comes here to be checked; in
 * hardened mode the block goes to the quarantine first (hardened.c), which frees it
 * through prmi_free_released when it leaves. */
int prmi_free_to_arena(void *mem)
{
    if (prm_unlikely(params()->hardened))
        return prmi_quarantine_free(mem);
    if (prm_unlikely(params()->canary)) {
        int saved_errno = errno;
        int status = prmi_canary_release(mem);
        errno = saved_errno;
        if (status != PRM_OK)
            return status;
    }
    return prmi_free_released(mem);
}

/* free of a block whose canary, if it has one, was checked and retired. */
int prmi_free_released(void *mem)
{
    int saved_errno = errno;
    int status;
    prm_chunk *p = chunk_for_pointer(mem, "free(): invalid pointer");
    if (p == NULL) {
        status = PRM_ERR_INVALID_POINTER;
    } else if (chunk_is_mmapped(p)) {
        adjust_thresholds_after_munmap(chunk_size(p));
        status = prmi_munmap_chunk(p);
    } else {
        status = free_heap_chunk(p, mem);
    }
    errno = saved_errno;
    return status;
}

/* Is mem a block of ours whose memory may be read? The checks free makes before trusting
 * a header, plus, for a heap chunk, the segment lookup under its arena's lock. Reports
 * (as `who`) and returns 0 when not. Used by the canary, which reads a block's tail. */
static int readable_block(void *mem, const char *who)
{
    prm_chunk *p = chunk_for_pointer(mem, who);
    if (p == NULL)
        return 0;
    if (chunk_is_mmapped(p))
        return 1;
    prm_arena *av = prmi_arena_of(p);
    prm_lock_acquire(&av->lock);
    int ours = prmi_in_our_heap(av, p);
    prm_lock_release(&av->lock);
    if (!ours)
        prmi_fail_pointer(who, "the chunk lies in no heap segment of ours", mem);
    return ours;
}

/* Before a block with a canary is freed: it must be ours, live and intact. Its tail is
 * then stamped as freed, which is how a second free is recognised. */
PRM_NOINLINE int prmi_canary_release(void *mem)
{
    if (!readable_block(mem, "free(): invalid pointer"))
        return PRM_ERR_INVALID_POINTER;
    int status = prmi_canary_verify(mem, "free(): canary overwritten",
                                    "free(): double free detected (canary)");
    if (status == PRM_OK)
        prmi_canary_retire(mem);
    return status;
}

static int free_plain(void *mem);

/* The cache's push of an aligned block of ours. A heap chunk of a cached size qualifies;
 * an mmapped one fails the size test because its M bit stays in `size`, and so does a
 * freed one's tombstone (size 0) or a buried header (hardened.h). A chunk that already
 * heads its bin is a double free even when its key was cleared, and one whose next
 * header is damaged is reported as the arena's free would. */
static inline int cache_free(prm_tcache *tc, void *mem, size_t arena_bit)
{
    /* With the checks, the NON_MAIN bit must be the one the chunk's memory says
     * (arena_bit): a forged one stays in `size`, which then fails the size test and goes
     * to the arena's free, which names it. */
    size_t size = PRM_HARDENING ? (load_size(mem2chunk(mem)) ^ arena_bit) & ~(size_t)PRM_PREV_INUSE
                                : load_size(mem2chunk(mem)) & ~(size_t)(PRM_PREV_INUSE | PRM_NON_MAIN);
    if (prm_likely(size - PRM_MINSIZE <= PRM_TCACHE_MAX_SIZE - PRM_MINSIZE && aligned_ok(size))) {
        size_t index = tcache_index(size);   /* size_t: no zero-extension on the path */
        prm_tcache_entry *e = mem;
        if (prm_unlikely(tcache_sealed(tc, e)))
            return prmi_free_keyed(mem);
        size_t next_head = load_size(chunk_at(mem2chunk(mem), size));
        if (prm_unlikely(next_head_damaged(next_head)))
            return prmi_free_next_damaged(mem);
        prm_tcache_entry *head = tc->entries[index];
        if (prm_unlikely(head == e))
            return prmi_free_cached_head(mem);
        if (prm_likely(tc->counts[index] < tc->limits[index])) {
            tcache_link(tc, e, head);
            tc->entries[index] = e;
            tc->counts[index]++;
            return PRM_OK;
        }
        return prmi_cache_full(tc, mem);
    }
    return prmi_free_large_class(tc, mem, size);
}

PRM_NOINLINE int prmi_cache_free_owned(prm_tcache *tc, void *mem)
{
    unsigned owner = prmi_owner_of((uintptr_t)mem2chunk(mem));
    return cache_free(tc, mem, owner == prmi_arena_owner(0) ? 0 : PRM_NON_MAIN);
}

/* The fast path pushes on this thread's cache: no lock, errno untouched, only tail
 * calls. A block outside the cache's range is checked out of line (hardened.h). */
static inline int free_plain(void *mem)
{
    prm_tcache *tc = prmi_self.tcache;
    if (prm_likely(tc > PRM_TCACHE_DISABLED)) {
        if (prm_likely(cache_range_holds(tc, mem)))
            return cache_free(tc, mem, tc->range_arena_bit);
        return prmi_free_out_of_range(tc, mem);
    }
    return mem != NULL ? prmi_free_to_arena(mem) : PRM_OK;
}

int prm_free(void *mem)
{
    return free_plain(mem);
}

/* calloc's allocation, under the lock: the memory, and in *dirty how many bytes of it
 * may hold old data. Memory the heap just grew by is fresh from the kernel and already
 * zero, so for a chunk carved from the old top only the old top's part is dirty; an
 * mmapped chunk is all fresh (calloc does not perturb). */
static void *calloc_in_arena(prm_arena *av, size_t nb, size_t *dirty)
{
    ARENA_ENTER(av, return NULL);
    prm_chunk *old_top = av->top;
    size_t old_top_size = old_top != NULL ? top_size(av) : 0;
    void *mem = prmi_int_malloc(av, nb);
    if (mem != NULL) {
        prm_chunk *p = mem2chunk(mem);
        account_alloc(av, p);
        *dirty = chunk_is_mmapped(p) ? 0
               : p == old_top && chunk_size(p) > old_top_size ? old_top_size : chunk_size(p);
    }
    ARENA_LEAVE(av);
    return mem;
}

static void *calloc_plain(size_t bytes);

void *prm_calloc(size_t count, size_t size)
{
    size_t bytes;
    if (prm_unlikely(__builtin_mul_overflow(count, size, &bytes))) {
        errno = ENOMEM;
        return NULL;
    }
    if (prm_likely(!params()->canary))
        return calloc_plain(bytes);
    if (bytes > PRM_MAX_REQUEST - PRM_CANARY_EXTRA) {
        errno = ENOMEM;
        return NULL;
    }
    if (prm_unlikely(params()->hardened && bytes == 0))
        return prmi_zero_block();
    void *mem = calloc_plain(bytes + PRM_CANARY_EXTRA);
    if (mem != NULL)
        prmi_canary_stamp(mem, bytes);
    return mem;
}

static void *calloc_plain(size_t bytes)
{
    size_t nb, dirty = 0;
    if (prm_unlikely(!checked_request2size(bytes, &nb))) {
        errno = ENOMEM;
        return NULL;
    }
    prm_arena *av = thread_arena();
    if (av == NULL)
        return NULL;
    void *mem = calloc_in_arena(av, nb, &dirty);
    if (mem != NULL && dirty > PRM_SIZE_SZ)
        memset(mem, 0, dirty - PRM_SIZE_SZ);
    return mem;
}

static void *realloc_in_arena(prm_arena *av, prm_chunk *oldp, void *oldmem, size_t oldsize, size_t nb);

static void *realloc_plain(void *oldmem, size_t bytes);

/* realloc with the canary on: the old block must be intact, the new one is stamped. */
static PRM_NOINLINE void *realloc_with_canary(void *oldmem, size_t bytes)
{
    if (bytes > PRM_MAX_REQUEST - PRM_CANARY_EXTRA) {
        errno = ENOMEM;
        return NULL;
    }
    if (!readable_block(oldmem, "realloc(): invalid pointer")) {
        errno = EINVAL;
        return NULL;
    }
    if (prmi_canary_verify(oldmem, "realloc(): canary overwritten",
                           "realloc(): invalid pointer") != PRM_OK) {
        errno = EINVAL;
        return NULL;
    }
    void *mem = realloc_plain(oldmem, bytes + PRM_CANARY_EXTRA);
    if (mem != NULL)
        prmi_canary_stamp(mem, bytes);
    return mem;
}

void *prm_realloc(void *oldmem, size_t bytes)
{
    if (oldmem == NULL)
        return prm_malloc(bytes);
    if (bytes == 0) {   /* glibc: realloc(p, 0) frees p and returns NULL */
        prm_free(oldmem);
        return NULL;
    }
    if (prm_unlikely(params()->hardened))
        return prmi_hardened_realloc(oldmem, bytes);
    if (prm_unlikely(prmi_freed_into_this_cache(oldmem))) {
        prmi_fail_pointer("realloc(): invalid pointer",
                          "the block is in this thread's cache: it was freed", oldmem);
        errno = EINVAL;
        return NULL;
    }
    if (prm_unlikely(params()->canary))
        return realloc_with_canary(oldmem, bytes);
    return realloc_plain(oldmem, bytes);
}

/* A realloc that keeps its chunk as it is (the request still fits, and what would be
 * left over is too small to split off) needs no lock: the chunk is in use by the caller,
 * so nobody else changes its size, and the next chunk's P bit (which only this chunk's
 * own free or realloc clears) says it is in use. The ownership map vouches for both
 * ends; anything unusual takes the locked path, whose checks name it. */
static int realloc_keeps_chunk(prm_arena *av, prm_chunk *p, size_t size)
{
    unsigned owner = prmi_arena_owner(av->index);
    uintptr_t a = (uintptr_t)p;
    if (PRM_CHECK_LINKS || a > UINTPTR_MAX - size || prmi_owner_of(a) != owner ||
        prmi_owner_of(a + size) != owner)
        return 0;
    size_t next_head = load_size(chunk_at(p, size));
    return (next_head & PRM_PREV_INUSE) && (next_head & ~PRM_FLAG_BITS) >= PRM_CHUNK_HDR;
}

static void *realloc_plain(void *oldmem, size_t bytes)
{
    prm_chunk *oldp = chunk_for_pointer(oldmem, "realloc(): invalid pointer");
    if (oldp == NULL) {
        errno = EINVAL;
        return NULL;
    }
    size_t nb;
    if (prm_unlikely(!checked_request2size(bytes, &nb))) {
        errno = ENOMEM;
        return NULL;
    }
    size_t oldsize = chunk_size(oldp);

    if (chunk_is_mmapped(oldp)) {
        if (prmi_mmapped_chunk_linked(oldp, "realloc(): invalid pointer") != PRM_OK) {
            errno = EINVAL;
            return NULL;
        }
        prm_chunk *newp = prmi_mremap_chunk(oldp, nb);
        if (newp != NULL)
            return chunk2mem(newp);
        if (oldsize - PRM_SIZE_SZ >= nb)
            return oldmem;   /* shrinking, and mremap refused: keep it as it is */
        void *newmem = prm_malloc(bytes);
        if (newmem == NULL)
            return NULL;
        memcpy(newmem, oldmem, oldsize - PRM_CHUNK_HDR);
        prmi_munmap_chunk(oldp);
        return newmem;
    }

    prm_arena *av = prmi_arena_of(oldp);
    if (nb <= oldsize && oldsize - nb < PRM_MINSIZE && realloc_keeps_chunk(av, oldp, oldsize))
        return oldmem;
    if (prm_unlikely(av->abandoned)) {
        /* Fork child: the chunk's arena died mid-update; copy out, leave the chunk. */
        void *newmem = prm_malloc(bytes);
        if (newmem != NULL)
            memcpy(newmem, oldmem, oldsize - PRM_SIZE_SZ < bytes ? oldsize - PRM_SIZE_SZ : bytes);
        return newmem;
    }
    return realloc_in_arena(av, oldp, oldmem, oldsize, nb);
}

/* realloc of a heap chunk in its own arena, under the lock. */
static void *realloc_in_arena(prm_arena *av, prm_chunk *oldp, void *oldmem, size_t oldsize, size_t nb)
{
    ARENA_ENTER(av, return NULL);
    if (prm_unlikely(!prmi_in_our_heap(av, oldp))) {
        ARENA_LEAVE(av);
        prmi_fail_pointer("realloc(): invalid pointer", "the chunk lies in no heap segment of ours", oldmem);
        errno = EINVAL;
        return NULL;
    }
    account_free(av, oldp);
    void *newmem = int_realloc(av, oldp, oldsize, nb);
    account_alloc(av, newmem != NULL ? mem2chunk(newmem) : oldp);
    ARENA_LEAVE(av);
    return newmem;
}

void *prm_reallocarray(void *mem, size_t count, size_t size)
{
    size_t bytes;
    if (prm_unlikely(__builtin_mul_overflow(count, size, &bytes))) {
        errno = ENOMEM;
        return NULL;
    }
    return prm_realloc(mem, bytes);
}

static void *memalign_in_arena(prm_arena *av, size_t alignment, size_t nb)
{
    ARENA_ENTER(av, return NULL);
    void *mem = int_memalign(av, alignment, nb);
    if (mem != NULL)
        account_alloc(av, mem2chunk(mem));
    ARENA_LEAVE(av);
    return mem;
}

static void *memalign_plain(size_t alignment, size_t bytes);

void *prm_memalign(size_t alignment, size_t bytes)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        errno = EINVAL;
        return NULL;
    }
    if (alignment <= PRM_ALIGN)
        return prm_malloc(bytes);
    size_t extra = params()->canary ? PRM_CANARY_EXTRA : 0;
    if (bytes > PRM_MAX_REQUEST - extra) {
        errno = ENOMEM;
        return NULL;
    }
    void *mem = memalign_plain(alignment, bytes + extra);
    if (mem != NULL && extra != 0)
        prmi_canary_stamp(mem, bytes);
    return mem;
}

static void *memalign_plain(size_t alignment, size_t bytes)
{
    size_t nb;
    if (alignment > PRM_MAX_REQUEST / 2 || !checked_request2size(bytes, &nb) ||
        nb > PRM_MAX_REQUEST - alignment - PRM_MINSIZE) {
        errno = ENOMEM;
        return NULL;
    }
    prm_arena *av = thread_arena();
    return av != NULL ? memalign_in_arena(av, alignment, nb) : NULL;
}

/* glibc's contract: EINVAL for a bad alignment (errno untouched); ENOMEM when memory
 * runs out, and then errno says ENOMEM too, as glibc's memalign leaves it. */
int prm_posix_memalign(void **out, size_t alignment, size_t bytes)
{
    if (alignment % sizeof(void *) != 0 || (alignment & (alignment - 1)) != 0 || alignment == 0)
        return EINVAL;
    void *mem = prm_memalign(alignment, bytes);
    if (mem == NULL) {
        errno = ENOMEM;
        return ENOMEM;
    }
    *out = mem;
    return 0;
}

void *prm_aligned_alloc(size_t alignment, size_t bytes)
{
    return prm_memalign(alignment, bytes);
}

void *prm_valloc(size_t bytes)
{
    return prm_memalign(prm_os_page_size(), bytes);
}

void *prm_pvalloc(size_t bytes)
{
    size_t page = prm_os_page_size();
    if (bytes > PRM_MAX_REQUEST) {
        errno = ENOMEM;
        return NULL;
    }
    return prm_memalign(page, align_up(bytes == 0 ? 1 : bytes, page));
}

/* malloc_usable_size is no hot path, and a program may hand it anything: in every
 * build the pointer is looked up (heaps, then the mapping registry) before its header
 * is read, so a pointer we never returned is reported by name, as free reports it,
 * never a fault on memory that is not there. */
static int known_block(void *mem, const char *who)
{
    enum prmi_mapped found = PRMI_MAPPED_UNKNOWN;
    if (!PRM_CHECK_LINKS && aligned_ok((uintptr_t)mem) && !looked_up(mem, who, &found))
        return 0;
    return readable_block(mem, who);   /* in checked mode, chunk_for_pointer looks it up */
}

/* The usable size of a block the caller knows is ours and live (the preload shim's
 * accounting and the recorder, around the calls that return and free it). */
size_t prmi_usable_size_trusted(void *mem)
{
    if (prm_unlikely(params()->canary))
        return prmi_canary_requested(mem);   /* beyond what was asked lies the canary */
    prm_chunk *p = mem2chunk(mem);
    if (chunk_is_mmapped(p))
        return chunk_size(p) - PRM_CHUNK_HDR;
    if (inuse_at(p, chunk_size(p)))
        return chunk_size(p) - PRM_SIZE_SZ;
    return 0;
}

/* Is the heap block mem (ours, no canary) live? A block freed into this thread's cache
 * looks in use to its boundary tags, but its key and its bin say otherwise; one freed to
 * its arena (a bin's, not a fast bin's) has a next chunk that says so. 1, or 0 after
 * reporting (as `who`). */
static int freed_block_reported(void *mem, const char *who)
{
    prm_chunk *p = mem2chunk(mem);
    if (chunk_is_mmapped(p))
        return 1;
    if (prmi_freed_into_this_cache(mem))
        return !prmi_fail_pointer(who, "the block is freed: it waits in this thread's cache", mem);
    if (!inuse_at(p, chunk_size(p)))
        return !prmi_fail_pointer(who, "the block is freed: the next chunk's header says so", mem);
    return 1;
}

/* malloc_usable_size's checks, reporting a bad block as `who` (or its canary as
 * `overwritten`): 1 and the usable size in *usable, or 0 (a zero-size block, a null
 * pointer, or reported). */
int prmi_usable_size_checked(void *mem, const char *who, const char *overwritten, size_t *usable)
{
    *usable = 0;
    if (prm_unlikely(params()->hardened) && mem != NULL && !prmi_hardened_usable(mem, who))
        return 0;
    if (mem == NULL || !known_block(mem, who))
        return 0;
    if (prm_unlikely(params()->canary)) {
        if (prmi_canary_verify(mem, overwritten, who) != PRM_OK)
            return 0;
    } else if (!freed_block_reported(mem, who)) {
        return 0;
    }
    *usable = prmi_usable_size_trusted(mem);
    return 1;
}

size_t prm_usable_size(void *mem)
{
    size_t usable;
    prmi_usable_size_checked(mem, "malloc_usable_size(): invalid pointer",
                             "malloc_usable_size(): canary overwritten", &usable);
    return usable;
}
