/* mmapped.c - chunks that have a mapping of their own: creating them with mmap,
 * resizing them with mremap, giving them back with munmap, and the registry that lists
 * them for walks, checks and accounting. */
#include "internal.h"
#include "prm.h"

static prm_mmap_registry *registry(void) { return &prmi_state.mmapped; }

/* The ownership map's pages of a mapped chunk: from its mapping's start to the page of
 * its header (pagemap.h). */
static void mark_mapped(prm_mmap_header *h, prm_chunk *p, unsigned owner)
{
    prmi_pagemap_mark((uintptr_t)h, (uintptr_t)p + 1, owner);
}

/* A new chunk of at least nb bytes in its own mapping, or NULL when the mmap limit
 * (M_MMAP_MAX) is reached or the kernel refuses. The usable size is the chunk size less
 * its header: unlike a heap chunk, nothing follows whose prev_size could be borrowed. */
/* Hardened mode's guard page at the end of every mapping (not part of the chunk). */
static size_t guard_length(void)
{
    return params()->hardened ? prm_os_page_size() : 0;
}

prm_chunk *prmi_mmap_chunk(size_t nb)
{
    prm_mmap_registry *reg = registry();
    size_t page = prm_os_page_size();
    /* Hardened mode starts the block on a page, so that the quarantine can close all of
     * its pages (hardened.c), and ends the mapping with an inaccessible guard page. */
    size_t offset = params()->hardened ? page - PRM_CHUNK_HDR : sizeof(prm_mmap_header);
    if (nb > PRM_MAX_REQUEST)
        return NULL;
    size_t guard = guard_length();
    size_t length = align_up(offset + nb + PRM_SIZE_SZ, page) + guard;

    prm_lock_acquire(&reg->lock);
    int allowed = reg->count < (size_t)(params()->n_mmaps_max > 0 ? params()->n_mmaps_max : 0);
    prm_lock_release(&reg->lock);
    if (!allowed)
        return NULL;

    prm_mmap_header *h = prm_os_mmap(length);
    if (h == NULL)
        return NULL;
    if (prmi_pagemap_reserve((uintptr_t)h, (uintptr_t)h + length) != 0) {
        prm_os_munmap(h, length);
        return NULL;
    }
    prm_os_name_mapping(h, length, PRM_MAP_NAME_MMAPPED);
    if (guard != 0 && prm_os_decommit((char *)h + length - guard, guard) != 0) {
        prm_os_munmap(h, length);
        return NULL;
    }
    h->length = length;
    prm_chunk *p = (prm_chunk *)((char *)h + offset);
    h->chunk = p;
    p->prev_size = offset;
    set_head(p, (length - guard - offset) | PRM_IS_MMAPPED);
    mark_mapped(h, p, PRM_OWNER_MAPPED);

    prm_lock_acquire(&reg->lock);
    if (prm_likely(!reg->broken)) {
        h->next = reg->list.next;
        h->prev = &reg->list;
        reg->list.next->prev = h;
        reg->list.next = h;
    }
    if (++reg->count > reg->max_count)
        reg->max_count = reg->count;
    reg->mapped_bytes += length;
    if (reg->mapped_bytes > reg->max_mapped_bytes)
        reg->max_mapped_bytes = reg->mapped_bytes;
    reg->chunk_bytes += chunk_size(p);
    prm_lock_release(&reg->lock);
    return p;
}

/* Under the registry lock: is h one of the registry's own mapping headers? (A fork child
 * that found the list mid-update cannot tell, and says yes.) */
static int registered_locked(prm_mmap_registry *reg, const prm_mmap_header *h)
{
    if (reg->broken)
        return 1;
    size_t steps = 0;
    for (prm_mmap_header *q = reg->list.next; q != &reg->list && steps++ <= reg->count; q = q->next)
        if (q == h)
            return 1;
    return 0;
}

/* Does mapping header h, known to be the registry's, hold chunk p consistently? Reads p's
 * header only once p is known to lie inside h's mapping. */
static int chunk_fits_mapping(const prm_mmap_header *h, prm_chunk *p)
{
    size_t page = prm_os_page_size();
    uintptr_t start = (uintptr_t)h, chunk = (uintptr_t)p;
    if ((h->length & (page - 1)) != 0 || chunk < start + sizeof(prm_mmap_header) ||
        chunk - start > h->length - PRM_MINSIZE || !aligned_ok(chunk))
        return 0;
    size_t offset = p->prev_size;
    return offset == chunk - start && h->length == offset + chunk_size(p) + guard_length();
}

/* Does the ownership map say that a mapping starts at h and runs at least to p's
 * header? Then h is a live mapping's header and may be read. */
static int mapped_per_pagemap(const prm_mmap_header *h, const prm_chunk *p)
{
    return prmi_owner_of((uintptr_t)h) == PRM_OWNER_MAPPED && prmi_owner_of((uintptr_t)p) == PRM_OWNER_MAPPED;
}

/* Does p look like a chunk this registry handed out? Its prev_size names its mapping's
 * header; a damaged one could name any address, so the header must be one of the
 * registry's before it is read. */
int prmi_mmapped_chunk_valid(prm_chunk *p)
{
    size_t page = prm_os_page_size();
    size_t offset = p->prev_size;
    if (offset < sizeof(prm_mmap_header) || !aligned_ok(offset) || offset > (uintptr_t)p)
        return 0;
    prm_mmap_header *h = mmap_header_of(p);
    if (((uintptr_t)h & (page - 1)) != 0)
        return 0;
    if (!mapped_per_pagemap(h, p)) {   /* not in the map: ask the registry (slow path) */
        prm_mmap_registry *reg = registry();
        prm_lock_acquire(&reg->lock);
        int known = registered_locked(reg, h);
        prm_lock_release(&reg->lock);
        if (!known)
            return 0;
    }
    return h->chunk == p && chunk_fits_mapping(h, p);
}

/* The checker's test of one registry entry (under the registry lock). */
int prmi_mmapped_entry_valid(const prm_mmap_header *h)
{
    return chunk_fits_mapping(h, h->chunk) && chunk_is_mmapped(h->chunk);
}

/* Under the registry lock: is h properly linked? (A fork child that found the list
 * mid-update no longer maintains it, and says yes.) */
static int linked(prm_mmap_registry *reg, prm_mmap_header *h)
{
    return reg->broken || (h->next->prev == h && h->prev->next == h);
}

static int report_unlinked(prm_chunk *p, const char *check)
{
    return prmi_fail_pointer(check, "its entry in the registry of mapped chunks is not linked",
                             chunk2mem(p));
}

int prmi_mmapped_chunk_linked(prm_chunk *p, const char *check)
{
    prm_mmap_registry *reg = registry();
    prm_lock_acquire(&reg->lock);
    int ok = linked(reg, mmap_header_of(p));
    prm_lock_release(&reg->lock);
    return ok ? PRM_OK : report_unlinked(p, check);
}

/* Under the registry lock: remember that the chunk whose memory was at mem is gone, and
 * the tombstone page it left (0 if none). Returns the oldest tombstone, which the caller
 * unmaps, as the ring forgets it (0 if none). */
static uintptr_t remember_unmapped(prm_mmap_registry *reg, const void *mem, uintptr_t tombstone)
{
    unsigned slot = reg->unmapped_next;
    uintptr_t evicted = reg->tombstones[slot];
    reg->unmapped[slot] = (uintptr_t)mem;
    reg->tombstones[slot] = tombstone;
    reg->unmapped_next = (slot + 1) % PRM_UNMAPPED_REMEMBERED;
    return evicted;
}

/* Tombstones serve the LD_PRELOAD build, whose free reads a header before it looks the
 * pointer up. The checked build (Python's) looks every pointer up first, so there a
 * tombstone would add nothing, and the seeds' contract holds to the letter: free of an
 * mmapped block gives the whole mapping back. */
#define PRM_TOMBSTONES (PRM_HARDENING && !PRM_CHECK_LINKS)

/* Give a freed chunk's mapping back, except (PRM_TOMBSTONES) the page holding its
 * header, which becomes a tombstone: a read-only page of zeros (no memory used). A
 * second free of the chunk then reads a header of zeros, not unmapped memory, and the
 * registry names it a double free. Returns the tombstone page, or 0 if the whole
 * mapping went (no tombstones in this build, or the kernel refused). */
static uintptr_t unmap_leaving_tombstone(prm_mmap_header *h, size_t length, prm_chunk *p)
{
    size_t page = prm_os_page_size();
    uintptr_t start = (uintptr_t)h, end = start + length;
    uintptr_t tomb = align_down((uintptr_t)p, page);
    if (!PRM_TOMBSTONES || prm_os_tombstone((void *)tomb, page, 1) != 0) {
        prm_os_munmap(h, length);
        return 0;
    }
    if (tomb > start)
        prm_os_munmap(h, tomb - start);
    if (tomb + page < end)
        prm_os_munmap((void *)(tomb + page), end - (tomb + page));
    return tomb;
}

/* Is mem the memory of a live mmapped chunk, of one unmapped lately, or neither (as far
 * as the registry knows)? Reads no memory but the registry's and, where the ownership
 * map says a live mapping's pages are, its header: a live chunk is found in O(1); the
 * rest (a chunk unmapped lately, a pointer that is no mapped chunk) walks the registry's
 * list, which only a program's error reaches. */
enum prmi_mapped prmi_mmapped_lookup(const void *mem)
{
    prm_mmap_registry *reg = registry();
    const prm_chunk *p = mem2chunk((void *)mem);
    enum prmi_mapped found = PRMI_MAPPED_UNKNOWN;
    /* The map first: a page it marks is mapped, so the header there may be read. */
    if (prmi_owner_of((uintptr_t)p) == PRM_OWNER_MAPPED) {
        size_t offset = p->prev_size;
        const prm_mmap_header *h = (const prm_mmap_header *)((uintptr_t)p - offset);
        if (offset <= (uintptr_t)p && ((uintptr_t)h & (prm_os_page_size() - 1)) == 0 &&
            mapped_per_pagemap(h, p) && h->chunk == p)
            return PRMI_MAPPED_LIVE;
    }
    prm_lock_acquire(&reg->lock);
    if (reg->broken) {
        found = PRMI_MAPPED_LIVE;   /* a fork child cannot tell: trust the header, as before */
    } else {
        size_t steps = 0;
        for (prm_mmap_header *h = reg->list.next; h != &reg->list && steps++ <= reg->count; h = h->next) {
            if (h->chunk == p) {
                found = PRMI_MAPPED_LIVE;
                break;
            }
        }
        for (unsigned i = 0; found == PRMI_MAPPED_UNKNOWN && i < PRM_UNMAPPED_REMEMBERED; i++)
            if (reg->unmapped[i] == (uintptr_t)mem)
                found = PRMI_MAPPED_GONE;
    }
    prm_lock_release(&reg->lock);
    return found;
}

/* Unmap a chunk the caller validated. PRM_OK (also if munmap itself failed: the chunk is
 * forgotten anyway), or an error status if its registry entry is not linked. errno is
 * preserved. */
int prmi_munmap_chunk(prm_chunk *p)
{
    prm_mmap_registry *reg = registry();
    prm_mmap_header *h = mmap_header_of(p);
    size_t length = h->length;

    prm_lock_acquire(&reg->lock);
    if (prm_unlikely(!linked(reg, h))) {
        prm_lock_release(&reg->lock);
        return report_unlinked(p, "munmap_chunk(): invalid pointer");
    }
    if (prm_likely(!reg->broken)) {
        h->prev->next = h->next;
        h->next->prev = h->prev;
    }
    reg->count--;
    reg->mapped_bytes -= length;
    reg->chunk_bytes -= chunk_size(p);
    mark_mapped(h, p, PRM_OWNER_NONE);
    prm_lock_release(&reg->lock);

    int saved = errno;
    uintptr_t tomb = unmap_leaving_tombstone(h, length, p);
    prm_lock_acquire(&reg->lock);
    uintptr_t evicted = remember_unmapped(reg, chunk2mem(p), tomb);
    prm_lock_release(&reg->lock);
    if (evicted != 0)
        prm_os_forget_tombstone((void *)evicted, prm_os_page_size());
    errno = saved;
    return PRM_OK;
}

/* Resize the mapping of chunk p so the chunk holds at least nb bytes; the kernel may
 * move it. Returns the chunk (perhaps at a new address), or NULL if mremap failed and
 * p is unchanged. */
prm_chunk *prmi_mremap_chunk(prm_chunk *p, size_t nb)
{
    prm_mmap_registry *reg = registry();
    size_t page = prm_os_page_size();
    prm_mmap_header *h = mmap_header_of(p);
    size_t offset = p->prev_size;
    size_t old_length = h->length;
    size_t old_size = chunk_size(p);
    size_t new_length = align_up(offset + nb + PRM_SIZE_SZ, page);

    if (new_length == old_length)
        return p;

    prm_lock_acquire(&reg->lock);
    prm_mmap_header *moved = prm_os_mremap(h, old_length, new_length);
    if (moved == NULL) {
        prm_lock_release(&reg->lock);
        return NULL;
    }
    /* Where the map has no leaf for the new place (the kernel refused one), the chunk is
     * still found through the registry: the map only speeds up finding it. */
    mark_mapped(h, p, PRM_OWNER_NONE);
    (void)prmi_pagemap_reserve((uintptr_t)moved, (uintptr_t)moved + new_length);
    /* The header moved with the data: repoint the neighbours and the chunk. */
    if (prm_likely(!reg->broken)) {
        moved->next->prev = moved;
        moved->prev->next = moved;
    }
    moved->length = new_length;
    prm_chunk *q = (prm_chunk *)((char *)moved + offset);
    /* Moved: the old header's page is unmapped; a tombstone there, if the address is
     * still free, makes a free through the stale pointer a report, not a fault. */
    uintptr_t evicted = 0;
    if (q != p) {
        uintptr_t tomb = align_down((uintptr_t)p, page);
        if (!PRM_TOMBSTONES || prm_os_tombstone((void *)tomb, page, 0) != 0)
            tomb = 0;
        evicted = remember_unmapped(reg, chunk2mem(p), tomb);
    }
    moved->chunk = q;
    set_head(q, (new_length - offset) | PRM_IS_MMAPPED);
    mark_mapped(moved, q, PRM_OWNER_MAPPED);
    reg->mapped_bytes += new_length - old_length;
    if (reg->mapped_bytes > reg->max_mapped_bytes)
        reg->max_mapped_bytes = reg->mapped_bytes;
    reg->chunk_bytes += chunk_size(q) - old_size;
    prm_lock_release(&reg->lock);
    if (evicted != 0)
        prm_os_forget_tombstone((void *)evicted, prm_os_page_size());
    return q;
}

/* memalign on an mmapped chunk: move the chunk start `lead` bytes up inside its mapping.
 * The bytes skipped stay mapped and are returned with the mapping on free. */
prm_chunk *prmi_mmapped_shift(prm_chunk *p, size_t lead)
{
    prm_mmap_registry *reg = registry();
    prm_chunk *q = chunk_at(p, lead);
    size_t new_size = chunk_size(p) - lead;
    q->prev_size = p->prev_size + lead;
    set_head(q, new_size | PRM_IS_MMAPPED);
    prm_lock_acquire(&reg->lock);
    mmap_header_of(q)->chunk = q;
    mark_mapped(mmap_header_of(q), q, PRM_OWNER_MAPPED);
    reg->chunk_bytes -= lead;
    prm_lock_release(&reg->lock);
    return q;
}
