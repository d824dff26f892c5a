/* pagemap.h - the ownership map: which of our structures, if any, owns an address.
 *
 * One byte per 4 KiB page of the 48-bit address space, in two levels: a static table of
 * PRM_PAGEMAP_ROOTS pointers, each to a leaf of PRM_PAGEMAP_LEAF bytes covering 4 GiB,
 * mapped the first time a range in it is marked (and never unmapped: a leaf costs 1 MiB
 * of address space and only the pages of it that are written). The byte says:
 *
 *   PRM_OWNER_NONE     not ours (another allocator, a stack, a global, nothing)
 *   1 .. 253           a page of a heap segment of arena (byte - 1): brk, mmap fallback
 *                      or a non-main heap's committed part
 *   PRM_OWNER_ARENA_N  a heap segment of an arena numbered 253 or more
 *   PRM_OWNER_MAPPED   a page from the start of an mmapped chunk's mapping up to the page
 *                      holding the chunk's header
 *
 * Answering "is this pointer ours, in which arena, or a mapped chunk" is then two loads
 * and no lock: free's fast and slow paths, realloc, malloc_usable_size and the checks
 * ask here instead of searching segment lists. Marking happens where segments are
 * opened, grown and trimmed (arena.c) and where chunks are mapped and unmapped
 * (mmapped.c), under the lock that guards those structures; readers may race with a
 * writer only over pages whose owner is changing, which no valid pointer can be in.
 *
 * Invariant: every byte of every segment and every mapped chunk's header page is marked
 * with its owner before the memory is handed out, and cleared before it is given back
 * to the kernel. A leaf that cannot be mapped makes the segment's growth fail (ENOMEM),
 * so the map is never silently incomplete. */
#ifndef PRM_PAGEMAP_H
#define PRM_PAGEMAP_H

#include <stddef.h>
#include <stdint.h>

#include "glue.h"

#define PRM_PAGEMAP_PAGE_SHIFT 12
#define PRM_PAGEMAP_ADDRESS_BITS 48
#define PRM_PAGEMAP_LEAF_BITS 20   /* pages per leaf: 2^20 x 4 KiB = 4 GiB */
#define PRM_PAGEMAP_LEAF ((size_t)1 << PRM_PAGEMAP_LEAF_BITS)
#define PRM_PAGEMAP_ROOTS ((size_t)1 << (PRM_PAGEMAP_ADDRESS_BITS - PRM_PAGEMAP_PAGE_SHIFT - PRM_PAGEMAP_LEAF_BITS))

enum {
    PRM_OWNER_NONE = 0,
    PRM_OWNER_ARENA_LAST = 253,   /* arena index + 1, for indices 0 .. 252 */
    PRM_OWNER_ARENA_N = 254,
    PRM_OWNER_MAPPED = 255,
};

typedef struct prm_pagemap {
    uint8_t *leaves[PRM_PAGEMAP_ROOTS];
    size_t leaf_count;            /* leaves mapped so far (their bytes: stats) */
} prm_pagemap;

PRM_INTERNAL extern prm_pagemap prmi_pagemap;

/* The owner byte of the page holding addr. */
static inline unsigned prmi_owner_of(uintptr_t addr)
{
    uintptr_t page = addr >> PRM_PAGEMAP_PAGE_SHIFT;
    uintptr_t root = page >> PRM_PAGEMAP_LEAF_BITS;
    if (prm_unlikely(root >= PRM_PAGEMAP_ROOTS))
        return PRM_OWNER_NONE;
    const uint8_t *leaf = __atomic_load_n(&prmi_pagemap.leaves[root], __ATOMIC_ACQUIRE);
    if (leaf == NULL)
        return PRM_OWNER_NONE;
    return __atomic_load_n(&leaf[page & (PRM_PAGEMAP_LEAF - 1)], __ATOMIC_RELAXED);
}

/* The owner byte of arena number `index`'s heap pages. */
static inline unsigned prmi_arena_owner(int index)
{
    return index < PRM_OWNER_ARENA_LAST ? (unsigned)index + 1 : PRM_OWNER_ARENA_N;
}

static inline int prmi_owner_is_arena(unsigned owner)
{
    return owner - 1 < PRM_OWNER_ARENA_N;
}

/* Make sure the leaves for [start, end) exist: 0, or -1 (ENOMEM) when the kernel
 * refuses one. Call before the memory is used, so that marking cannot fail. */
PRM_INTERNAL int prmi_pagemap_reserve(uintptr_t start, uintptr_t end);

/* Set the owner of every page that [start, end) touches (its leaves reserved). */
PRM_INTERNAL void prmi_pagemap_mark(uintptr_t start, uintptr_t end, unsigned owner);

/* Bytes of address space the map's leaves take. */
PRM_INTERNAL size_t prmi_pagemap_bytes(void);

#endif
