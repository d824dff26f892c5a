/* lab_bitmap.c - fixed-size blocks tracked by a bitmap (seed 001's 固定内存分配): the
 * region is cut into blocks of one size, each request takes one block (a bigger request
 * fails: that is the policy), and a bit per block says whether it is free.
 *
 * To find the lowest free block in O(log64 n) the bitmap has levels: bit i of level 0 is
 * block i (1 = free); bit i of level l + 1 says word i of level l has a free bit. The top
 * level is one word. Bits past the last block are 0, so they are never found. Taking the
 * lowest free block keeps the used part of the region packed at its start. */
#include "lab_internal.h"

#define LEVELS 5                /* 64^5 blocks: more than any region holds */

struct bitmap {
    struct lab_region region;
    size_t block;               /* bytes per block */
    size_t blocks;
    unsigned levels;
    uint64_t *level[LEVELS];    /* level[0] has (blocks + 63) / 64 words */
    size_t words[LEVELS];
    uint64_t *bits;             /* the side mapping holding every level */
    size_t bits_mapped;
    size_t high_block;          /* blocks below this have been used */
};

static void mark_used(struct bitmap *m, size_t i)
{
    for (unsigned l = 0; l < m->levels; l++) {
        uint64_t *w = &m->level[l][i / 64];
        *w &= ~(1ull << (i % 64));
        if (*w)
            return;         /* the word still has a free bit: the levels above stay */
        i /= 64;
    }
}

static void mark_free(struct bitmap *m, size_t i)
{
    for (unsigned l = 0; l < m->levels; l++) {
        uint64_t *w = &m->level[l][i / 64];
        int was_empty = *w == 0;
        *w |= 1ull << (i % 64);
        if (!was_empty)
            return;
        i /= 64;
    }
}

static void *bitmap_malloc(void *self, size_t size, size_t alignment)
{
    struct bitmap *m = self;
    if (size > m->block || m->block % alignment || alignment > prm_os_page_size())
        return NULL;
    unsigned top = m->levels - 1;
    if (!m->level[top][0])
        return NULL;
    size_t i = 0;
    for (int l = (int)top; l >= 0; l--)
        i = i * 64 + (size_t)__builtin_ctzll(m->level[l][i]);
    LAB_ASSERT(i < m->blocks, "bitmap: bits past the last block are never free");
    mark_used(m, i);
    if (i + 1 > m->high_block) {
        m->high_block = i + 1;
        lab_region_reach(&m->region, m->region.base + (i + 1) * m->block);
    }
    return m->region.base + i * m->block;
}

static int is_free(const struct bitmap *m, size_t i)
{
    return (m->level[0][i / 64] >> (i % 64)) & 1;
}

static void bitmap_free(void *self, void *block)
{
    struct bitmap *m = self;
    size_t i = (size_t)((char *)block - m->region.base) / m->block;
    LAB_ASSERT(!is_free(m, i), "bitmap: free of a block that is in use");
    mark_free(m, i);
}

static size_t bitmap_usable(void *self, void *block)
{
    return ((struct bitmap *)self)->block;
}

static long bitmap_walk(void *self, struct lab_block *out, size_t capacity)
{
    struct bitmap *m = self;
    long n = 0;
    size_t run = 0;
    for (size_t i = 0; i < m->high_block; i++) {
        if (is_free(m, i)) {
            run++;
            continue;
        }
        if (run)
            lab_walk_put(out, capacity, &n, LAB_BLOCK_FREE, m->region.base + (i - run) * m->block,
                         run * m->block, m->region.base + (i - run) * m->block, run * m->block);
        run = 0;
        char *at = m->region.base + i * m->block;
        lab_walk_put(out, capacity, &n, LAB_BLOCK_USED, at, m->block, at, m->block);
    }
    if (run)
        lab_walk_put(out, capacity, &n, LAB_BLOCK_FREE,
                     m->region.base + (m->high_block - run) * m->block, run * m->block,
                     m->region.base + (m->high_block - run) * m->block, run * m->block);
    size_t used = m->high_block * m->block;
    if (used < m->region.size)
        lab_walk_put(out, capacity, &n, LAB_BLOCK_UNTOUCHED, m->region.base + used,
                     m->region.size - used, m->region.base + used, m->region.size - used);
    return n;
}

static void bitmap_stats(void *self, struct lab_stats *s)
{
    struct bitmap *m = self;
    memset(s, 0, sizeof *s);
    /* The whole bitmap counts: creating the policy wrote every word of it. */
    s->footprint = lab_region_footprint(&m->region) + m->bits_mapped;
    s->region_base = (uintptr_t)m->region.base;
    s->region_size = m->region.size;
    /* Free blocks below the high-water mark; the largest span is the longest run of free
     * blocks (though one request only ever gets one block). */
    size_t run = 0, longest = 0, total = 0;
    for (size_t i = 0; i < m->high_block;) {
        uint64_t w = m->level[0][i / 64];
        if (i % 64 == 0 && i + 64 <= m->high_block && (w == 0 || w == ~0ull)) {
            if (w) {
                run += 64;
                total += 64;
            } else {
                run = 0;
            }
            i += 64;
        } else {
            if ((w >> (i % 64)) & 1) {
                run++;
                total++;
            } else {
                run = 0;
            }
            i++;
        }
        if (run > longest)
            longest = run;
    }
    s->free_total = total * m->block;
    s->free_largest = longest * m->block;
}

static void bitmap_destroy(void *self)
{
    struct bitmap *m = self;
    lab_region_unmap(&m->region);
    prm_os_munmap(m->bits, m->bits_mapped);
    lab_state_delete(m, sizeof *m);
}

static const struct lab_ops bitmap_ops = {
    .malloc = bitmap_malloc, .free = bitmap_free, .usable = bitmap_usable,
    .walk = bitmap_walk, .stats = bitmap_stats, .destroy = bitmap_destroy,
};

int lab_bitmap_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct bitmap *m = lab_state_new(sizeof *m);
    if (!m)
        return LAB_ERR_NOMEM;
    m->block = c->block_size;
    m->blocks = c->region_size / c->block_size;
    size_t total = 0, n = m->blocks;
    unsigned l = 0;
    do {
        m->words[l] = (n + 63) / 64;
        total += m->words[l];
        n = m->words[l];
        l++;
    } while (m->words[l - 1] > 1 && l < LEVELS);
    m->levels = l;
    m->bits_mapped = lab_round_up(total * 8, prm_os_page_size());
    int status = m->words[l - 1] > 1 || !m->blocks ? LAB_ERR_INVALID
                 : lab_region_map(&m->region, m->blocks * m->block);
    if (status != LAB_OK) {
        lab_state_delete(m, sizeof *m);
        return status;
    }
    m->bits = prm_os_mmap(m->bits_mapped);
    if (!m->bits) {
        lab_region_unmap(&m->region);
        lab_state_delete(m, sizeof *m);
        return LAB_ERR_NOMEM;
    }
    uint64_t *at = m->bits;
    for (unsigned k = 0; k < m->levels; k++) {
        m->level[k] = at;
        at += m->words[k];
    }
    /* Every block starts free: set its bit and, through mark_free, the levels above. */
    for (size_t i = 0; i < m->blocks; i++)
        mark_free(m, i);
    *ops = &bitmap_ops;
    *self = m;
    return LAB_OK;
}
