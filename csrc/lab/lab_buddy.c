/* lab_buddy.c - the buddy system of seed 001, and its variant with pools that defer
 * merging (seed 001's fourth algorithm).
 *
 * The region is one block of 2^max_order bytes, aligned to its size. A block of order k
 * is 2^k bytes aligned to 2^k; its buddy is the block at offset ^ 2^k. malloc takes the
 * smallest order that holds the request (and its alignment: blocks are naturally
 * aligned), pops a free block of that order or splits a bigger one in halves down to it
 * (the upper halves go to their free lists); free merges a block with its buddy while the
 * buddy is free and whole, and so on upwards. Both are O(max_order - min_order).
 *
 * The block's order lives in a side table, one byte per smallest block, at the index of
 * the block's first byte, so the payload starts at the block itself and needs no header:
 *   tag = order | FREE (on a free list) | DEFER (buddy_pool: freed, not merged)
 * The tag of a block's head is always current; other entries are stale.
 *
 * buddy_pool: blocks below the pool order are never merged when freed: they go to a
 * per-order quick list (tag DEFER), from which the next request of that order takes them
 * back without splitting. Each pool (an aligned block of the pool order) counts its live
 * blocks; when the count drops to 0 the whole pool is free: its pieces leave the lists
 * and the pool becomes one free block, merged upwards like any other. */
#include "lab_internal.h"

#define FREE 0x80
#define DEFER 0x40
#define ORDER 0x3f

struct bnode {
    struct bnode *next;
    struct bnode *prev;
};

struct buddy {
    char *base;
    size_t mapped;              /* the region mapping */
    unsigned min_order, max_order;
    unsigned pool_order;        /* buddy_pool: pools are blocks of this order; else 64 */
    int pooled;
    uint8_t *tag;               /* [2^(max - min)] */
    uint32_t *pool_live;        /* [2^(max - pool)] live blocks per pool */
    size_t side_mapped;         /* the side tables' mapping */
    size_t high;                /* high-water mark (offset) */
    struct bnode *free[64];     /* free blocks of each order */
    struct bnode *deferred[64]; /* buddy_pool: freed blocks waiting for their pool */
    uint64_t splits, merges, pool_releases;
};

static size_t index_of(const struct buddy *b, size_t offset) { return offset >> b->min_order; }

static void push(struct bnode **list, void *at)
{
    struct bnode *n = at;
    n->prev = NULL;
    n->next = *list;
    if (*list)
        (*list)->prev = n;
    *list = n;
}

static void unlink_node(struct bnode **list, struct bnode *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        *list = n->next;
    if (n->next)
        n->next->prev = n->prev;
}

static unsigned order_for(const struct buddy *b, size_t size, size_t alignment)
{
    if (size < alignment)
        size = alignment;
    unsigned k = b->min_order;
    while (k < 64 && ((size_t)1 << k) < size)
        k++;
    return k;
}

/* Put the free block at `offset` of order k on its list, merging with free buddies
 * first. */
static void release(struct buddy *b, size_t offset, unsigned k)
{
    while (k < b->max_order) {
        size_t buddy = offset ^ ((size_t)1 << k);
        if (b->tag[index_of(b, buddy)] != (FREE | k))
            break;
        unlink_node(&b->free[k], (struct bnode *)(b->base + buddy));
        if (buddy < offset)
            offset = buddy;
        k++;
        b->merges++;
    }
    b->tag[index_of(b, offset)] = (uint8_t)(FREE | k);
    push(&b->free[k], b->base + offset);
}

/* The whole pool around `offset` has no live block: gather it into one free block. */
static void release_pool(struct buddy *b, size_t offset)
{
    size_t pool = offset >> b->pool_order << b->pool_order;
    size_t end = pool + ((size_t)1 << b->pool_order);
    for (size_t at = pool; at < end;) {
        uint8_t t = b->tag[index_of(b, at)];
        unsigned k = t & ORDER;
        LAB_ASSERT(t & (FREE | DEFER), "buddy_pool: a pool with no live block holds none");
        unlink_node(t & DEFER ? &b->deferred[k] : &b->free[k], (struct bnode *)(b->base + at));
        at += (size_t)1 << k;
    }
    b->pool_releases++;
    release(b, pool, b->pool_order);
}

static void *buddy_malloc(void *self, size_t size, size_t alignment)
{
    struct buddy *b = self;
    unsigned k = order_for(b, size, alignment);
    if (k > b->max_order)
        return NULL;
    struct bnode *n = NULL;
    if (b->pooled && k < b->pool_order && b->deferred[k]) {
        n = b->deferred[k];             /* a deferred block of this order: no split */
        unlink_node(&b->deferred[k], n);
    } else {
        unsigned j = k;
        while (j <= b->max_order && !b->free[j])
            j++;
        if (j > b->max_order)
            return NULL;
        n = b->free[j];
        unlink_node(&b->free[j], n);
        while (j > k) {                 /* split: keep the lower half, free the upper */
            j--;
            char *upper = (char *)n + ((size_t)1 << j);
            b->tag[index_of(b, (size_t)(upper - b->base))] = (uint8_t)(FREE | j);
            push(&b->free[j], upper);
            b->splits++;
        }
    }
    size_t offset = (size_t)((char *)n - b->base);
    b->tag[index_of(b, offset)] = (uint8_t)k;
    if (b->pooled && k < b->pool_order)
        b->pool_live[offset >> b->pool_order]++;
    size_t end = offset + ((size_t)1 << k);
    if (end > b->high)
        b->high = end;
    return n;
}

static void buddy_free(void *self, void *block)
{
    struct buddy *b = self;
    size_t offset = (size_t)((char *)block - b->base);
    uint8_t t = b->tag[index_of(b, offset)];
    LAB_ASSERT(!(t & (FREE | DEFER)), "buddy: free of a block that is in use");
    unsigned k = t & ORDER;
    LAB_ASSERT((offset & (((size_t)1 << k) - 1)) == 0, "buddy: a block is aligned to its size");
    if (b->pooled && k < b->pool_order) {
        b->tag[index_of(b, offset)] = (uint8_t)(DEFER | k);
        push(&b->deferred[k], block);
        LAB_ASSERT(b->pool_live[offset >> b->pool_order] > 0, "buddy_pool: a pool counts its live blocks");
        if (--b->pool_live[offset >> b->pool_order] == 0)
            release_pool(b, offset);
        return;
    }
    release(b, offset, k);
}

static size_t buddy_usable(void *self, void *block)
{
    struct buddy *b = self;
    return (size_t)1 << (b->tag[index_of(b, (size_t)((char *)block - b->base))] & ORDER);
}

static size_t side_footprint(const struct buddy *b)
{
    return lab_round_up(index_of(b, b->high), prm_os_page_size());
}

static long buddy_walk(void *self, struct lab_block *out, size_t capacity)
{
    struct buddy *b = self;
    struct lab_region r = {b->base, (size_t)1 << b->max_order, b->mapped, b->high};
    long n = 0;
    for (size_t at = 0; at < r.size;) {
        uint8_t t = b->tag[index_of(b, at)];
        size_t len = (size_t)1 << (t & ORDER);
        if (t & (FREE | DEFER))
            lab_walk_free(&r, out, capacity, &n, b->base + at, len);
        else
            lab_walk_put(out, capacity, &n, LAB_BLOCK_USED, b->base + at, len, b->base + at, len);
        at += len;
    }
    return n;
}

static void buddy_stats(void *self, struct lab_stats *s)
{
    struct buddy *b = self;
    memset(s, 0, sizeof *s);
    struct lab_region r = {b->base, (size_t)1 << b->max_order, b->mapped, b->high};
    s->footprint = lab_region_footprint(&r) + side_footprint(b);
    s->region_base = (uintptr_t)b->base;
    s->region_size = r.size;
    /* Deferred blocks are free only for their own order, so they count in the total
     * but a request could not get more than one of them. */
    for (unsigned k = b->min_order; k <= b->max_order; k++) {
        for (struct bnode *n = b->free[k]; n; n = n->next)
            lab_free_space_add(s, &r, (char *)n, (size_t)1 << k);
        for (struct bnode *n = b->deferred[k]; n; n = n->next)
            lab_free_space_add(s, &r, (char *)n, (size_t)1 << k);
    }
    s->splits = b->splits;
    s->merges = b->merges;
    s->pool_releases = b->pool_releases;
}

static void buddy_destroy(void *self)
{
    struct buddy *b = self;
    prm_os_munmap(b->base, b->mapped);
    prm_os_munmap(b->tag, b->side_mapped);
    lab_state_delete(b, sizeof *b);
}

static const struct lab_ops buddy_ops = {
    .malloc = buddy_malloc, .free = buddy_free, .usable = buddy_usable,
    .walk = buddy_walk, .stats = buddy_stats, .destroy = buddy_destroy,
};

int lab_buddy_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    unsigned max = 63;
    while (((uint64_t)1 << max) > c->region_size)
        max--;
    unsigned min = (unsigned)__builtin_ctzll(c->min_block);
    unsigned pool = (unsigned)__builtin_ctzll(c->pool_size);
    if (min > max || (c->kind == LAB_BUDDY_POOL && pool > max))
        return LAB_ERR_INVALID;
    struct buddy *b = lab_state_new(sizeof *b);
    if (!b)
        return LAB_ERR_NOMEM;
    size_t page = prm_os_page_size();
    size_t size = (size_t)1 << max;
    b->min_order = min;
    b->max_order = max;
    b->pooled = c->kind == LAB_BUDDY_POOL;
    b->pool_order = b->pooled ? pool : 64;
    /* Aligned to its size, so that a block's natural alignment is an absolute one. */
    b->mapped = lab_round_up(size, page);
    b->base = prm_os_reserve_aligned(b->mapped, size > page ? size : page);
    if (b->base && prm_os_commit(b->base, b->mapped) != 0) {
        prm_os_munmap(b->base, b->mapped);
        b->base = NULL;
    }
    size_t tags = (size_t)1 << (max - min);
    size_t pools = b->pooled ? (size_t)1 << (max - pool) : 0;
    b->side_mapped = lab_round_up(tags + pools * sizeof(uint32_t) + 8, page);
    b->tag = b->base ? prm_os_mmap(b->side_mapped) : NULL;
    if (!b->tag) {
        if (b->base)
            prm_os_munmap(b->base, b->mapped);
        lab_state_delete(b, sizeof *b);
        return LAB_ERR_NOMEM;
    }
    b->pool_live = (uint32_t *)(b->tag + lab_round_up(tags, 8));
    b->tag[0] = (uint8_t)(FREE | max);
    push(&b->free[max], b->base);
    *ops = &buddy_ops;
    *self = b;
    return LAB_OK;
}
