/* bins.c - the arena's free lists: initialisation, safe unlinking, placing a chunk in
 * its small or (sorted) large bin, the unsorted bin, and fast-bin consolidation.
 *
 * Small bins hold one size each, in FIFO order (insert at the front, take from the back).
 * Large bins are sorted by size, largest first; the first chunk of each distinct size
 * is also on a second ring (fd_nextsize/bk_nextsize) that skips the equal-sized ones,
 * so a best-fit search steps over sizes rather than over chunks. The binmap has a bit
 * per bin that is set whenever the bin may be non-empty (cleared lazily by malloc).
 * All functions run under the arena lock. */
#include "hardened.h"

void prmi_bins_init(prm_arena *av)
{
    for (unsigned i = 0; i < PRM_NBINS; i++) {
        prm_chunk *bin = bin_at(av, i);
        bin->prev_size = 0;
        bin->size = 0;
        bin->fd = bin->bk = bin;
        /* Never NULL: unlink reads fd->fd_nextsize == NULL as "fd is a second chunk of
         * the same size", and fd may be the bin head itself. */
        bin->fd_nextsize = bin->bk_nextsize = bin;
    }
    for (unsigned i = 0; i < PRM_NFASTBINS; i++)
        av->fastbins[i] = NULL;
    av->binmap[0] = av->binmap[1] = 0;
    av->have_fastchunks = 0;
    av->last_remainder = NULL;
}

/* Take a free chunk off its doubly linked bin, after checking that its neighbours
 * agree it is there (the "safe unlinking" that defeats the classic unlink exploit). */
void prmi_unlink_chunk(prm_arena *av, prm_chunk *p)
{
    size_t size = chunk_size(p);
    CHECK_CHUNK(av, next_chunk(p), "a free chunk's size leads outside its segment");
    if (prm_unlikely(next_chunk(p)->prev_size != size))
        prmi_fail_arena(av, "corrupted size vs. prev_size",
                        "the next chunk's prev_size disagrees with this free chunk's size", p);

    prm_chunk *fd = p->fd;
    prm_chunk *bk = p->bk;
    if (PRM_HARDENING && prm_unlikely(!prmi_link_leads_to_free(av, p, fd) || !prmi_link_leads_to_free(av, p, bk)))
        prmi_fail_arena(av, "corrupted double-linked list",
                        "a free chunk's fd or bk leads to no free chunk of this arena (a fake chunk?)", p);
    CHECK_LINK(av, fd, "a free chunk's fd points outside the heap");
    CHECK_LINK(av, bk, "a free chunk's bk points outside the heap");
    if (prm_unlikely(fd->bk != p || bk->fd != p))
        prmi_fail_arena(av, "corrupted double-linked list",
                        "fd->bk or bk->fd does not point back at the chunk", p);

    fd->bk = bk;
    bk->fd = fd;
    if (!in_smallbin_range(size) && p->fd_nextsize != NULL) {
        CHECK_LINK(av, p->fd_nextsize, "a large chunk's fd_nextsize points outside the heap");
        CHECK_LINK(av, p->bk_nextsize, "a large chunk's bk_nextsize points outside the heap");
        if (prm_unlikely(p->fd_nextsize->bk_nextsize != p || p->bk_nextsize->fd_nextsize != p))
            prmi_fail_arena(av, "corrupted double-linked list (not small)",
                            "the size-skip links of a large-bin chunk do not point back", p);
        if (fd->fd_nextsize == NULL) {
            /* fd becomes the first chunk of its size: it inherits p's skip links. */
            if (p->fd_nextsize == p) {
                fd->fd_nextsize = fd->bk_nextsize = fd;
            } else {
                fd->fd_nextsize = p->fd_nextsize;
                fd->bk_nextsize = p->bk_nextsize;
                p->fd_nextsize->bk_nextsize = fd;
                p->bk_nextsize->fd_nextsize = fd;
            }
        } else {
            p->fd_nextsize->bk_nextsize = p->bk_nextsize;
            p->bk_nextsize->fd_nextsize = p->fd_nextsize;
        }
    }
}

/* Put a free chunk at the front of the unsorted bin. The caller has set its head and
 * footer. Large-range chunks get cleared skip links so nothing stale survives. */
void prmi_unsorted_push(prm_arena *av, prm_chunk *p, size_t size)
{
    prm_chunk *bck = unsorted_bin(av);
    prm_chunk *fwd = bck->fd;
    CHECK_LINK(av, fwd, "the unsorted bin's first link points outside the heap");
    if (prm_unlikely(fwd->bk != bck))
        prmi_fail_arena(av, "free(): corrupted unsorted chunks",
                        "the unsorted bin's first chunk does not point back at the bin", p);
    if (!in_smallbin_range(size)) {
        p->fd_nextsize = NULL;
        p->bk_nextsize = NULL;
    }
    p->bk = bck;
    p->fd = fwd;
    bck->fd = p;
    fwd->bk = p;
}

/* Move a chunk taken from the unsorted bin into its own bin; large bins stay sorted. */
void prmi_place_in_bin(prm_arena *av, prm_chunk *victim, size_t size)
{
    unsigned index;
    prm_chunk *bck, *fwd;

    if (in_smallbin_range(size)) {
        index = smallbin_index(size);
        bck = bin_at(av, index);
        fwd = bck->fd;
        CHECK_LINK(av, fwd, "a small bin's first link points outside the heap");
    } else {
        index = largebin_index(size);
        bck = bin_at(av, index);
        fwd = bck->fd;
        CHECK_LINK(av, fwd, "a large bin's first link points outside the heap");
        CHECK_LINK(av, bck->bk, "a large bin's last link points outside the heap");
        if (fwd == bck) {
            victim->fd_nextsize = victim->bk_nextsize = victim;
        } else {
            /* The bin is sorted largest first; its last chunk is the smallest. */
            if (size < chunk_size(bck->bk)) {
                /* Smaller than everything: append after the last chunk. */
                fwd = bck;
                bck = bck->bk;
                prm_chunk *largest = fwd->fd;
                CHECK_LINK(av, largest->bk_nextsize, "a large chunk's bk_nextsize points outside the heap");
                if (prm_unlikely(largest->bk_nextsize->fd_nextsize != largest))
                    prmi_fail_arena(av, "malloc(): largebin double linked list corrupted (nextsize)",
                                    "the first large chunk's size ring is broken", largest);
                victim->fd_nextsize = largest;
                victim->bk_nextsize = largest->bk_nextsize;
                largest->bk_nextsize = victim;
                victim->bk_nextsize->fd_nextsize = victim;
            } else {
                size_t steps = 0;
                while (size < chunk_size(fwd)) {
                    fwd = fwd->fd_nextsize;
                    CHECK_LINK(av, fwd, "a large chunk's fd_nextsize points outside the heap");
                    if (prm_unlikely(++steps > list_step_limit(av)))
                        prmi_fail_arena(av, "malloc(): largebin double linked list corrupted (nextsize)",
                                        "a large bin's size ring never reaches a smaller size", fwd);
                }
                if (chunk_size(fwd) == size) {
                    /* That size is present: go second, so the size ring need not change. */
                    fwd = fwd->fd;
                    CHECK_LINK(av, fwd, "a large chunk's fd points outside the heap");
                    victim->fd_nextsize = victim->bk_nextsize = NULL;
                } else {
                    CHECK_LINK(av, fwd->bk_nextsize, "a large chunk's bk_nextsize points outside the heap");
                    if (prm_unlikely(fwd->bk_nextsize->fd_nextsize != fwd))
                        prmi_fail_arena(av, "malloc(): largebin double linked list corrupted (nextsize)",
                                        "a large chunk's size ring is broken", fwd);
                    victim->fd_nextsize = fwd;
                    victim->bk_nextsize = fwd->bk_nextsize;
                    fwd->bk_nextsize = victim;
                    victim->bk_nextsize->fd_nextsize = victim;
                }
                bck = fwd->bk;
                CHECK_LINK(av, bck, "a large chunk's bk points outside the heap");
                if (prm_unlikely(bck->fd != fwd))
                    prmi_fail_arena(av, "malloc(): largebin double linked list corrupted (bk)",
                                    "a large bin's chunk list is broken", fwd);
            }
        }
    }

    mark_bin(av, index);
    victim->bk = bck;
    victim->fd = fwd;
    fwd->bk = victim;
    bck->fd = victim;
}

/* Empty the fast bins: coalesce each chunk with its free neighbours and put the result
 * in the unsorted bin (or into top). With keep_top_neighbour, a chunk right below top
 * stays in its fast bin instead of becoming top's new start: a large request right after
 * would otherwise be carved at the very address just freed, which is how a stale pointer
 * to it frees a live chunk (fastbin dup through consolidation). */
static void consolidate(prm_arena *av, int keep_top_neighbour)
{
    prm_chunk *unsorted = unsorted_bin(av);
    av->have_fastchunks = 0;
    av->consolidations++;

    for (unsigned i = 0; i < PRM_NFASTBINS; i++) {
        prm_chunk *p = av->fastbins[i];
        prm_chunk *kept = NULL;
        av->fastbins[i] = NULL;
        while (p != NULL) {
            CHECK_LINK(av, p, "a fast-bin link points outside the heap");
            if (prm_unlikely(!aligned_ok((uintptr_t)p)))
                prmi_fail_arena(av, "malloc_consolidate(): unaligned fastbin chunk detected",
                                "a fast-bin link points at a misaligned address", p);
            if (prm_unlikely(fastbin_index(chunk_size(p)) != i))
                prmi_fail_arena(av, "malloc_consolidate(): invalid chunk size",
                                "a fast-bin chunk's size does not belong to its bin", p);
            if (prm_unlikely(!fastbin_sealed(p)))
                prmi_fail_arena(av, "malloc_consolidate(): fastbin link corrupted",
                                "a freed chunk's link was overwritten (a write after free?)", p);
            prm_chunk *next_in_bin = fastbin_next(p);
            size_t size = chunk_size(p);
            prm_chunk *next = chunk_at(p, size);
            /* Both neighbours' sizes are read to merge: bound them by p's segment. */
            prm_segment *seg = prmi_segment_of(av, (uintptr_t)p);
            if (prm_unlikely(seg == NULL || (uintptr_t)next + PRM_CHUNK_HDR > seg->end))
                prmi_fail_arena(av, "malloc_consolidate(): invalid chunk size",
                                "a fast-bin chunk runs past the end of its segment", p);
            size_t next_size = chunk_size(next);
            if (prm_unlikely(next->size <= PRM_CHUNK_HDR ||
                             (next != av->top && next_size > seg->end - (uintptr_t)next - PRM_CHUNK_HDR)))
                prmi_fail_arena(av, "malloc_consolidate(): invalid next size",
                                "the chunk after a fast-bin chunk has an impossible size", p);
            if (keep_top_neighbour && next == av->top) {
                fastbin_link(p, kept);
                kept = p;
                av->have_fastchunks = 1;
                p = next_in_bin;
                continue;
            }

            if (!prev_inuse(p)) {
                prm_chunk *absorbed = p;
                size_t prev_size = p->prev_size;
                if (prm_unlikely(!aligned_ok(prev_size) || prev_size < PRM_MINSIZE ||
                         prev_size > (uintptr_t)p - (uintptr_t)segment_first_chunk(seg)))
                    prmi_fail_arena(av, "corrupted size vs. prev_size in fastbins",
                                    "prev_size is misaligned, too small, or reaches below the segment", p);
                p = chunk_below(p, prev_size);
                CHECK_LINK(av, p, "prev_size leads outside the heap");
                if (prm_unlikely(chunk_size(p) != prev_size))
                    prmi_fail_arena(av, "corrupted size vs. prev_size in fastbins",
                                    "the free chunk below has a different size than prev_size says", p);
                size += prev_size;
                prmi_unlink_chunk(av, p);
                bury_header(absorbed);
            }

            if (next != av->top) {
                if (!inuse_at(next, next_size)) {
                    size += next_size;
                    prmi_unlink_chunk(av, next);
                    bury_header(next);
                } else {
                    clear_inuse_at(next, 0);
                }
                prm_chunk *first = unsorted->fd;
                unsorted->fd = p;
                first->bk = p;
                if (!in_smallbin_range(size)) {
                    p->fd_nextsize = NULL;
                    p->bk_nextsize = NULL;
                }
                set_head(p, size | PRM_PREV_INUSE | (p->size & PRM_NON_MAIN));
                p->bk = unsorted;
                p->fd = first;
                set_foot(p, size);
            } else {
                size += next_size;
                set_head(p, size | PRM_PREV_INUSE | (p->size & PRM_NON_MAIN));
                av->top = p;
                bury_header(next);
            }
            p = next_in_bin;
        }
        av->fastbins[i] = kept;
    }
}

/* Called by frees that produce a chunk of 64 KiB or more, by malloc_trim, and when top
 * is too small for a request: every fast chunk goes. */
void prmi_consolidate(prm_arena *av)
{
    consolidate(av, 0);
}

/* Called before a large request is served: fast chunks below top stay (see above). */
void prmi_consolidate_below_top(prm_arena *av)
{
    consolidate(av, PRM_HARDENING);
}
