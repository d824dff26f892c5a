/* lab_freelist.c - the free-list policies of seed 001: first fit, next fit, best fit
 * and worst fit over one address-ordered list of free blocks, with boundary tags so that
 * a freed block merges with free neighbours on both sides at once.
 *
 *   block:  [prev_size][size|P|U][ payload ............................ ]
 *   free:   [prev_size][size|P| ][ next | prev | ...                  ]
 *           U (bit 0): this block is in use; P (bit 1): the block before it is in use.
 *           prev_size is valid only when P is clear: it finds the free block before.
 *
 * The region starts as one free block. Invariants: blocks tile the region without gaps;
 * no two free blocks are neighbours (freeing merges at once); the free list holds every
 * free block, in address order. The address order is what makes first fit the textbook
 * first fit (lowest address), and it makes freeing O(free blocks) when neither neighbour
 * is free: the place in the list is searched. Every search is a walk of the list, so all
 * four fits are O(free blocks) per malloc, which the benchmark shows. */
#include "lab_internal.h"

struct fblock {
    uint64_t prev_size;
    uint64_t size;              /* whole block, header included, plus the U and P bits */
    struct fblock *next;        /* free blocks only */
    struct fblock *prev;
};

#define HEADER 16
#define MIN_BLOCK 32
#define IN_USE 1ull
#define PREV_IN_USE 2ull
#define FLAGS 3ull

struct freelist {
    struct lab_region region;
    char *end;                  /* the region's end, the last block's end */
    struct fblock *head;        /* the lowest free block */
    struct fblock *rover;       /* next fit: where the next search starts */
    int fit;                    /* LAB_FIRST_FIT .. LAB_WORST_FIT */
    uint64_t splits, merges;
};

static uint64_t size_of(const struct fblock *b) { return b->size & ~FLAGS; }
static struct fblock *after(struct fblock *b) { return (struct fblock *)((char *)b + size_of(b)); }

/* Tell the block after b (if any) whether b is free, and b's size when it is. */
static void tell_next(struct freelist *f, struct fblock *b, int free)
{
    struct fblock *n = after(b);
    if ((char *)n >= f->end)
        return;
    if (free) {
        n->prev_size = size_of(b);
        n->size &= ~PREV_IN_USE;
    } else {
        n->size |= PREV_IN_USE;
    }
}

static void list_remove(struct freelist *f, struct fblock *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        f->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    if (f->rover == b)
        f->rover = b->next;
}

/* Put b into the list between prev and next (either may be NULL). */
static void list_link(struct freelist *f, struct fblock *b, struct fblock *prev,
                      struct fblock *next)
{
    b->prev = prev;
    b->next = next;
    if (prev)
        prev->next = b;
    else
        f->head = b;
    if (next)
        next->prev = b;
}

/* Insert b at its place in address order: the O(free blocks) part of free. */
static void list_insert(struct freelist *f, struct fblock *b)
{
    struct fblock *prev = NULL, *next = f->head;
    while (next && next < b) {
        prev = next;
        next = next->next;
    }
    list_link(f, b, prev, next);
}

/* The free block the policy picks for `need` bytes at `alignment`, and its gap. */
static struct fblock *search(struct freelist *f, size_t need, size_t alignment, size_t *gap)
{
    struct fblock *chosen = NULL;
    size_t chosen_gap = 0;
    switch (f->fit) {
    case LAB_FIRST_FIT:
        for (struct fblock *b = f->head; b; b = b->next) {
            size_t g = lab_fit_gap((uintptr_t)b, size_of(b), need, alignment, HEADER, MIN_BLOCK);
            if (g != SIZE_MAX) {
                *gap = g;
                return b;
            }
        }
        return NULL;
    case LAB_NEXT_FIT: {
        /* From the rover to the end of the list, then from the head up to the rover. */
        struct fblock *start = f->rover ? f->rover : f->head;
        struct fblock *b = start;
        while (b) {
            size_t g = lab_fit_gap((uintptr_t)b, size_of(b), need, alignment, HEADER, MIN_BLOCK);
            if (g != SIZE_MAX) {
                *gap = g;
                return b;
            }
            b = b->next ? b->next : f->head;
            if (b == start)
                break;
        }
        return NULL;
    }
    case LAB_BEST_FIT:
    case LAB_WORST_FIT:
        for (struct fblock *b = f->head; b; b = b->next) {
            size_t g = lab_fit_gap((uintptr_t)b, size_of(b), need, alignment, HEADER, MIN_BLOCK);
            if (g == SIZE_MAX)
                continue;
            if (!chosen || (f->fit == LAB_BEST_FIT ? size_of(b) < size_of(chosen)
                                                    : size_of(b) > size_of(chosen))) {
                chosen = b;
                chosen_gap = g;
                if (f->fit == LAB_BEST_FIT && size_of(b) == need + g)
                    break;      /* exact: nothing can be better */
            }
        }
        *gap = chosen_gap;
        return chosen;
    }
    return NULL;
}

static void *freelist_malloc(void *self, size_t size, size_t alignment)
{
    struct freelist *f = self;
    if (size > f->region.size)
        return NULL;
    size_t need = lab_round_up(size + HEADER, LAB_ALIGNMENT);
    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    size_t gap;
    struct fblock *b = search(f, need, alignment, &gap);
    if (!b)
        return NULL;
    struct fblock *list_prev, *list_next = b->next;
    struct fblock *a;
    uint64_t total = size_of(b);
    if (gap) {
        /* The aligned gap stays a free block, in b's place in the list. */
        b->size = gap | PREV_IN_USE;
        list_prev = b;
        a = (struct fblock *)((char *)b + gap);
        a->prev_size = gap;
        a->size = total - gap;          /* P clear: the gap before it is free */
        total -= gap;
        f->splits++;
    } else {
        list_prev = b->prev;
        list_remove(f, b);
        a = b;
    }
    if (total - need >= MIN_BLOCK) {
        struct fblock *t = (struct fblock *)((char *)a + need);
        t->size = (total - need) | PREV_IN_USE;
        list_link(f, t, list_prev, list_next);
        tell_next(f, t, 1);
        a->size = need | (a->size & PREV_IN_USE) | IN_USE;
        f->splits++;
        if (f->fit == LAB_NEXT_FIT)
            f->rover = t;
    } else {
        a->size = total | (a->size & PREV_IN_USE) | IN_USE;
        tell_next(f, a, 0);
        if (f->fit == LAB_NEXT_FIT)
            f->rover = list_next;
    }
    lab_region_reach(&f->region, after(a));
    return (char *)a + HEADER;
}

static void freelist_free(void *self, void *block)
{
    struct freelist *f = self;
    struct fblock *b = (struct fblock *)((char *)block - HEADER);
    LAB_ASSERT(b->size & IN_USE, "free list: free of a block that is in use");
    uint64_t size = size_of(b);
    struct fblock *n = after(b);
    int next_free = (char *)n < f->end && !(n->size & IN_USE);
    if (!(b->size & PREV_IN_USE)) {
        /* Merge into the free block before: it keeps its place in the list. */
        struct fblock *p = (struct fblock *)((char *)b - b->prev_size);
        LAB_ASSERT(!(p->size & IN_USE) && size_of(p) == b->prev_size,
                   "free list: prev_size leads to the free block before");
        size += size_of(p);
        f->merges++;
        if (next_free) {
            size += size_of(n);
            list_remove(f, n);
            f->merges++;
        }
        b = p;
    } else if (next_free) {
        /* Take the place of the free block after. */
        struct fblock *prev = n->prev, *next = n->next;
        int rover = f->rover == n;
        size += size_of(n);
        list_remove(f, n);
        list_link(f, b, prev, next);
        if (rover)
            f->rover = b;
        f->merges++;
    } else {
        list_insert(f, b);
    }
    /* A free block always follows a block in use (or starts the region). */
    b->size = size | PREV_IN_USE;
    tell_next(f, b, 1);
}

static size_t freelist_usable(void *self, void *block)
{
    return size_of((struct fblock *)((char *)block - HEADER)) - HEADER;
}

static long freelist_walk(void *self, struct lab_block *out, size_t capacity)
{
    struct freelist *f = self;
    long n = 0;
    for (struct fblock *b = (struct fblock *)f->region.base; (char *)b < f->end; b = after(b)) {
        if (b->size & IN_USE)
            lab_walk_put(out, capacity, &n, LAB_BLOCK_USED, b, size_of(b),
                         (char *)b + HEADER, size_of(b) - HEADER);
        else
            lab_walk_free(&f->region, out, capacity, &n, (char *)b, size_of(b));
    }
    return n;
}

static void freelist_stats(void *self, struct lab_stats *s)
{
    struct freelist *f = self;
    memset(s, 0, sizeof *s);
    s->footprint = lab_region_footprint(&f->region);
    s->region_base = (uintptr_t)f->region.base;
    s->region_size = f->region.size;
    for (struct fblock *b = f->head; b; b = b->next)
        lab_free_space_add(s, &f->region, (char *)b, size_of(b));
    s->splits = f->splits;
    s->merges = f->merges;
}

static void freelist_destroy(void *self)
{
    struct freelist *f = self;
    lab_region_unmap(&f->region);
    lab_state_delete(f, sizeof *f);
}

static const struct lab_ops freelist_ops = {
    .malloc = freelist_malloc, .free = freelist_free, .usable = freelist_usable,
    .walk = freelist_walk, .stats = freelist_stats, .destroy = freelist_destroy,
};

int lab_freelist_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct freelist *f = lab_state_new(sizeof *f);
    if (!f)
        return LAB_ERR_NOMEM;
    size_t size = c->region_size & ~(uint64_t)(LAB_ALIGNMENT - 1);
    if (lab_region_map(&f->region, size) != LAB_OK) {
        lab_state_delete(f, sizeof *f);
        return LAB_ERR_NOMEM;
    }
    f->fit = c->kind;
    f->end = f->region.base + size;
    struct fblock *all = (struct fblock *)f->region.base;
    all->size = size | PREV_IN_USE;     /* nothing before the first block to merge with */
    list_link(f, all, NULL, NULL);
    f->rover = all;
    *ops = &freelist_ops;
    *self = f;
    return LAB_OK;
}
