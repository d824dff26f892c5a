/* lab_internal.h - what the lab's policies share and cffi never sees: the table of
 * operations each policy fills, the policy handle, the region helpers and the
 * invariant assertions. */
#ifndef LAB_INTERNAL_H
#define LAB_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "lab.h"
#include "../core/os.h"

#define LAB_LIKELY(x) __builtin_expect(!!(x), 1)
#define LAB_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LAB_HIDDEN __attribute__((visibility("hidden")))

/* Invariant checks: on in the sanitizer test build (-DLAB_DEBUG), where a broken
 * invariant names itself and aborts; off in the Python module, where every pointer a
 * policy sees comes from the replay loop's own table. */
#ifdef LAB_DEBUG
LAB_HIDDEN __attribute__((noreturn)) void lab_invariant_failed(const char *file, int line,
                                                              const char *invariant);
#define LAB_ASSERT(cond, invariant) \
    ((cond) ? (void)0 : lab_invariant_failed(__FILE__, __LINE__, invariant))
#else
#define LAB_ASSERT(cond, invariant) ((void)0)
#endif

/* The operations of one policy. `self` is the policy's own state. realloc may be NULL:
 * lab_realloc then keeps the block when the new size fits its usable size and is at
 * least half of it, and moves it otherwise. walk NULL: unsupported. */
struct lab_ops {
    void *(*malloc)(void *self, size_t size, size_t alignment);
    void (*free)(void *self, void *block);
    void *(*realloc)(void *self, void *block, size_t size);
    size_t (*usable)(void *self, void *block);
    long (*walk)(void *self, struct lab_block *out, size_t capacity);
    void (*stats)(void *self, struct lab_stats *out);
    void (*destroy)(void *self);
    void *(*calloc)(void *self, size_t size);   /* NULL: malloc, then zeros written */
};

struct lab_policy {
    const struct lab_ops *ops;
    void *self;
    int kind;
};

/* Each policy's constructor: fills *ops and *self from the configuration (defaults
 * already applied by lab_policy_new). 0, or a lab_status. */
LAB_HIDDEN int lab_minimal_create(const struct lab_config *c, const struct lab_ops **ops, void **self);
LAB_HIDDEN int lab_freelist_create(const struct lab_config *c, const struct lab_ops **ops, void **self);
LAB_HIDDEN int lab_buddy_create(const struct lab_config *c, const struct lab_ops **ops, void **self);
LAB_HIDDEN int lab_bitmap_create(const struct lab_config *c, const struct lab_ops **ops, void **self);
LAB_HIDDEN int lab_slab_create(const struct lab_config *c, const struct lab_ops **ops, void **self);
LAB_HIDDEN int lab_real_create(const struct lab_config *c, const struct lab_ops **ops, void **self);

/* The slab policy's cache functions (lab_slab.c), reached from lab.c's public ones. */
LAB_HIDDEN int lab_slab_cache_create(void *self, const char *name, size_t size, size_t align,
                                     void (*ctor)(void *));
LAB_HIDDEN void *lab_slab_cache_alloc(void *self, int cache);
LAB_HIDDEN void lab_slab_cache_free(void *self, int cache, void *object);
LAB_HIDDEN int lab_slab_cache_info(void *self, int cache, struct lab_cache_info *out);

/* Where a block of `need` bytes (header included) whose payload, `header` bytes in,
 * must be aligned to `alignment` goes in the free span [start, start + len): the gap
 * left before it (0, or at least min_gap so that the gap can be a free block of its
 * own), or SIZE_MAX when it does not fit. */
static inline size_t lab_fit_gap(uintptr_t start, size_t len, size_t need,
                                 size_t alignment, size_t header, size_t min_gap)
{
    uintptr_t payload = (start + header + alignment - 1) & ~(uintptr_t)(alignment - 1);
    size_t gap = payload - header - start;
    while (gap && gap < min_gap)
        gap += alignment;
    if (gap > len || len - gap < need)
        return SIZE_MAX;
    return gap;
}

/* ---- Regions -------------------------------------------------------------------------
 * A region is one anonymous mapping: nothing is backed until touched. `high` is the
 * high-water mark, as an offset: the policies raise it whenever they place something
 * higher than before, and the footprint is it rounded up to pages. */
struct lab_region {
    char *base;
    size_t size;                /* usable bytes */
    size_t mapped;              /* bytes mapped (size rounded up to pages) */
    size_t high;
};

static inline size_t lab_round_up(size_t n, size_t to)   /* to: a power of two */
{
    return (n + to - 1) & ~(to - 1);
}

static inline int lab_region_map(struct lab_region *r, size_t size)
{
    size_t page = prm_os_page_size();
    r->mapped = lab_round_up(size, page);
    r->base = prm_os_mmap(r->mapped);
    r->size = size;
    r->high = 0;
    return r->base ? LAB_OK : LAB_ERR_NOMEM;
}

static inline void lab_region_unmap(struct lab_region *r)
{
    if (r->base)
        prm_os_munmap(r->base, r->mapped);
    r->base = NULL;
}

static inline void lab_region_reach(struct lab_region *r, const void *end)
{
    size_t offset = (size_t)((const char *)end - r->base);
    if (offset > r->high)
        r->high = offset;
}

static inline size_t lab_region_footprint(const struct lab_region *r)
{
    return lab_round_up(r->high, prm_os_page_size());
}

/* A policy's own state: a zero-filled mapping of its own (the lab never uses the
 * process's malloc for a policy, so glibc's entry measures only the trace's blocks). */
static inline void *lab_state_new(size_t size)
{
    return prm_os_mmap(lab_round_up(size, prm_os_page_size()));
}

static inline void lab_state_delete(void *state, size_t size)
{
    prm_os_munmap(state, lab_round_up(size, prm_os_page_size()));
}

/* Free space [start, start + len) seen below the high-water mark: clipped to it. */
static inline void lab_free_space_add(struct lab_stats *s, const struct lab_region *r,
                                      const char *start, size_t len)
{
    size_t off = (size_t)(start - r->base);
    if (off >= r->high)
        return;
    if (len > r->high - off)
        len = r->high - off;
    s->free_total += len;
    if (len > s->free_largest)
        s->free_largest = len;
}

/* A walk entry, written only while there is room; the count goes on regardless. */
static inline void lab_walk_put(struct lab_block *out, size_t capacity, long *n, int kind,
                                const void *span, size_t span_size, const void *address,
                                size_t size)
{
    if ((size_t)*n < capacity) {
        struct lab_block *b = &out[*n];
        b->address = (uint64_t)(uintptr_t)address;
        b->size = size;
        b->span_start = (uint64_t)(uintptr_t)span;
        b->span_size = span_size;
        b->kind = kind;
        b->pad_ = 0;
    }
    (*n)++;
}

/* A free span as walk entries: FREE below the high-water mark, UNTOUCHED above. */
static inline void lab_walk_free(const struct lab_region *r, struct lab_block *out,
                                 size_t capacity, long *n, const char *start, size_t len)
{
    size_t off = (size_t)(start - r->base);
    size_t below = off >= r->high ? 0 : (len < r->high - off ? len : r->high - off);
    if (below)
        lab_walk_put(out, capacity, n, LAB_BLOCK_FREE, start, below, start, below);
    if (len > below)
        lab_walk_put(out, capacity, n, LAB_BLOCK_UNTOUCHED, start + below, len - below,
                     start + below, len - below);
}

/* The region beyond the high-water mark, as one UNTOUCHED entry. */
static inline void lab_walk_tail(const struct lab_region *r, struct lab_block *out,
                                 size_t capacity, long *n)
{
    if (r->high < r->size)
        lab_walk_put(out, capacity, n, LAB_BLOCK_UNTOUCHED, r->base + r->high,
                     r->size - r->high, r->base + r->high, r->size - r->high);
}

#endif
