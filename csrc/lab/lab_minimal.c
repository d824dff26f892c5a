/* lab_minimal.c - the minimal allocator of seed 001 (the classic "inside memory
 * management" one): every block starts with the header {is_available, size}, malloc
 * walks all blocks from the start of the region for the first available one that fits
 * and otherwise moves its end (its "break") up, free only marks the block available.
 *
 *   region: [hdr|payload....][hdr|payload..][hdr|payload......]  end ->  untouched
 *            ^ size covers header and payload; blocks follow each other without gaps
 *
 * Two small additions keep it usable on long traces, and say so: a block much larger
 * than the request is split (the rest becomes an available block), and runs of
 * available blocks are merged, forward from a freed block and along malloc's walk
 * (there is no footer, so a block cannot find the one before it). After everything is
 * freed, the next malloc's walk merges the whole region into one block. */
#include "lab_internal.h"

struct mem_control_block {
    uint64_t is_available;
    uint64_t size;              /* the whole block, header included, a multiple of 16 */
};

#define HEADER sizeof(struct mem_control_block)
#define MIN_BLOCK 32

struct minimal {
    struct lab_region region;
    char *end;                  /* one past the last block: the allocator's break */
    uint64_t splits, merges;
};

static struct mem_control_block *next_block(struct mem_control_block *b)
{
    return (struct mem_control_block *)((char *)b + b->size);
}

/* Merge b with the available blocks right after it. */
static void absorb_followers(struct minimal *m, struct mem_control_block *b)
{
    struct mem_control_block *n = next_block(b);
    while ((char *)n < m->end && n->is_available) {
        b->size += n->size;
        m->merges++;
        n = next_block(n);
    }
}

/* Make a block of `size` bytes at `at`, followed by nothing (the caller sets the rest). */
static struct mem_control_block *make(char *at, uint64_t size, uint64_t available)
{
    struct mem_control_block *b = (struct mem_control_block *)at;
    b->is_available = available;
    b->size = size;
    return b;
}

/* Take the available block b for a request: the aligned gap in front and a remainder
 * at the back become available blocks of their own. */
static void *take(struct minimal *m, struct mem_control_block *b, size_t gap, size_t need)
{
    if (gap) {
        uint64_t rest = b->size - gap;
        b->size = gap;
        b = make((char *)b + gap, rest, 1);
        m->splits++;
    }
    if (b->size - need >= MIN_BLOCK) {
        make((char *)b + need, b->size - need, 1);
        b->size = need;
        m->splits++;
    }
    b->is_available = 0;
    lab_region_reach(&m->region, (char *)b + b->size);
    return (char *)b + HEADER;
}

static void *minimal_malloc(void *self, size_t size, size_t alignment)
{
    struct minimal *m = self;
    if (size > m->region.size)
        return NULL;
    size_t need = lab_round_up(size + HEADER, LAB_ALIGNMENT);
    if (need < MIN_BLOCK)
        need = MIN_BLOCK;
    /* 1. Walk every block from the start: the first available one that fits wins. */
    char *start = m->region.base;
    for (struct mem_control_block *b = (struct mem_control_block *)start;
         (char *)b < m->end; b = next_block(b)) {
        LAB_ASSERT(b->size >= MIN_BLOCK && b->size % LAB_ALIGNMENT == 0,
                   "minimal: a block's size is a multiple of 16 and at least 32");
        if (!b->is_available)
            continue;
        absorb_followers(m, b);
        size_t gap = lab_fit_gap((uintptr_t)b, b->size, need, alignment, HEADER, MIN_BLOCK);
        if (gap != SIZE_MAX)
            return take(m, b, gap, need);
    }
    /* 2. None fits: move the end up, as sbrk would. */
    size_t room = (size_t)(m->region.base + m->region.size - m->end);
    size_t gap = lab_fit_gap((uintptr_t)m->end, room, need, alignment, HEADER, MIN_BLOCK);
    if (gap == SIZE_MAX)
        return NULL;
    struct mem_control_block *b = make(m->end, gap + need, 1);
    m->end += gap + need;
    return take(m, b, gap, need);
}

static void minimal_free(void *self, void *block)
{
    struct minimal *m = self;
    struct mem_control_block *b = (struct mem_control_block *)((char *)block - HEADER);
    LAB_ASSERT(!b->is_available, "minimal: free of a block that is in use");
    b->is_available = 1;
    absorb_followers(m, b);
}

static size_t minimal_usable(void *self, void *block)
{
    return ((struct mem_control_block *)((char *)block - HEADER))->size - HEADER;
}

static long minimal_walk(void *self, struct lab_block *out, size_t capacity)
{
    struct minimal *m = self;
    long n = 0;
    for (struct mem_control_block *b = (struct mem_control_block *)m->region.base;
         (char *)b < m->end; b = next_block(b)) {
        if (b->is_available)
            lab_walk_put(out, capacity, &n, LAB_BLOCK_FREE, b, b->size, b, b->size);
        else
            lab_walk_put(out, capacity, &n, LAB_BLOCK_USED, b, b->size,
                         (char *)b + HEADER, b->size - HEADER);
    }
    lab_walk_tail(&m->region, out, capacity, &n);
    return n;
}

static void minimal_stats(void *self, struct lab_stats *s)
{
    struct minimal *m = self;
    memset(s, 0, sizeof *s);
    s->footprint = lab_region_footprint(&m->region);
    s->region_base = (uintptr_t)m->region.base;
    s->region_size = m->region.size;
    /* A run of available blocks is one free space: malloc's walk would merge it. */
    uint64_t run = 0;
    char *run_start = NULL;
    for (struct mem_control_block *b = (struct mem_control_block *)m->region.base;
         (char *)b < m->end; b = next_block(b)) {
        if (b->is_available) {
            if (!run)
                run_start = (char *)b;
            run += b->size;
            continue;
        }
        if (run)
            lab_free_space_add(s, &m->region, run_start, run);
        run = 0;
    }
    if (run)
        lab_free_space_add(s, &m->region, run_start, run);
    s->splits = m->splits;
    s->merges = m->merges;
}

static void minimal_destroy(void *self)
{
    struct minimal *m = self;
    lab_region_unmap(&m->region);
    lab_state_delete(m, sizeof *m);
}

static const struct lab_ops minimal_ops = {
    .malloc = minimal_malloc, .free = minimal_free, .usable = minimal_usable,
    .walk = minimal_walk, .stats = minimal_stats, .destroy = minimal_destroy,
};

int lab_minimal_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct minimal *m = lab_state_new(sizeof *m);
    if (!m)
        return LAB_ERR_NOMEM;
    if (lab_region_map(&m->region, c->region_size) != LAB_OK) {
        lab_state_delete(m, sizeof *m);
        return LAB_ERR_NOMEM;
    }
    m->end = m->region.base;
    *ops = &minimal_ops;
    *self = m;
    return LAB_OK;
}
