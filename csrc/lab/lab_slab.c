/* lab_slab.c - slab caches in the manner of the kernel's kmem_cache_create / alloc /
 * free, and kmalloc's size classes on top of them.
 *
 * A cache holds objects of one size in slabs: runs of pages that begin with a
 * descriptor and are cut into equal objects. Each slab is on one of its cache's three
 * lists, full, partial or empty; allocation takes from a partial slab, else from the
 * empty one, else makes a slab (running the constructor, if any, over every object);
 * freeing moves a slab back from full to partial to empty. A cache keeps one empty slab
 * for the next burst and gives the pages of any further empty slab back to the page
 * allocator below. Objects are found free by a bitmap in the descriptor (at most 512
 * objects a slab), so an object is never written while free: a constructed object stays
 * constructed, as the kernel promises.
 *
 *   slab:  [descriptor | bits][obj][obj][obj] ... [obj][slack]
 *
 * Pages come from a page allocator over the region: runs of 2^o pages, taken from a
 * per-order list of released runs or from the top of the used part of the region. There
 * is no merging of runs (the kernel's buddy page allocator does that; see lab_buddy.c).
 * A side table with one word per page says what owns it: a slab (its descriptor), the
 * head of a large kmalloc run, or the head of a free run. kmalloc takes the smallest
 * class that fits (16 .. 32 KiB; 16 is the lab's alignment, so there is no kmalloc-8),
 * and anything bigger gets a power-of-two run of pages, as kmalloc_large does. */
#include "lab_internal.h"

#define MAX_OBJECTS 512
#define PAGE_LARGE 1u           /* side-table tags: (order << 2) | tag */
#define PAGE_FREE 2u
#define MAX_ORDER 40

enum { LIST_EMPTY = 0, LIST_PARTIAL = 1, LIST_FULL = 2 };

struct kcache;

struct slab {
    struct slab *next, *prev;
    struct kcache *cache;
    uint32_t inuse;
    uint32_t list;              /* LIST_EMPTY, LIST_PARTIAL or LIST_FULL */
    uint64_t used[MAX_OBJECTS / 64];
};

#define DESCRIPTOR lab_round_up(sizeof(struct slab), LAB_ALIGNMENT)

struct kcache {
    char name[32];
    size_t size;                /* object stride */
    size_t align;               /* the objects' alignment */
    size_t slab_size;
    unsigned order;             /* slab_size = page << order */
    unsigned per_slab;
    size_t first;               /* offset of the first object */
    void (*ctor)(void *);
    struct slab *lists[3];
    uint64_t counts[3];
    uint64_t in_use;
};

struct slab_policy {
    struct lab_region region;
    size_t page;
    unsigned page_shift;
    uintptr_t *owner;           /* [pages] see PAGE_LARGE / PAGE_FREE, or a slab */
    size_t owner_mapped;
    size_t top;                 /* pages handed out from the region's start */
    void *runs[MAX_ORDER];      /* released runs of 2^o pages (a next pointer in each) */
    struct kcache caches[LAB_SLAB_MAX_CACHES];
    int n_caches;
    size_t slab_size;           /* configured, for objects up to 512 bytes */
};

static const size_t kmalloc_sizes[LAB_KMALLOC_CACHES] = {
    16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768,
};

/* ---- The page allocator ---- */

static size_t page_of(const struct slab_policy *s, const void *p)
{
    return (size_t)((const char *)p - s->region.base) >> s->page_shift;
}

static void *pages_alloc(struct slab_policy *s, unsigned order)
{
    if (order >= MAX_ORDER)
        return NULL;
    void *run = s->runs[order];
    if (run) {
        s->runs[order] = *(void **)run;
        return run;
    }
    size_t n = (size_t)1 << order;
    if (s->top + n > s->region.size >> s->page_shift)
        return NULL;
    char *at = s->region.base + (s->top << s->page_shift);
    s->top += n;
    lab_region_reach(&s->region, at + (n << s->page_shift));
    return at;
}

static void pages_release(struct slab_policy *s, void *run, unsigned order)
{
    size_t first = page_of(s, run);
    for (size_t i = 0; i < ((size_t)1 << order); i++)
        s->owner[first + i] = 0;
    s->owner[first] = ((uintptr_t)order << 2) | PAGE_FREE;
    *(void **)run = s->runs[order];
    s->runs[order] = run;
}

/* ---- Caches ---- */

static void list_move(struct kcache *c, struct slab *sl, uint32_t to)
{
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        c->lists[sl->list] = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    c->counts[sl->list]--;
    sl->list = to;
    sl->prev = NULL;
    sl->next = c->lists[to];
    if (sl->next)
        sl->next->prev = sl;
    c->lists[to] = sl;
    c->counts[to]++;
}

static int cache_init(struct slab_policy *s, struct kcache *c, const char *name, size_t size,
                      size_t align)
{
    if (!size || size > 32768 || !align || (align & (align - 1)) || align > s->page)
        return LAB_ERR_INVALID;
    if (align < LAB_ALIGNMENT)
        align = LAB_ALIGNMENT;
    memset(c, 0, sizeof *c);
    strncpy(c->name, name ? name : "", sizeof c->name - 1);
    c->size = lab_round_up(size, align);
    /* Objects are aligned to the largest power of two dividing the stride (a page at
     * most), so kmalloc's power-of-two classes are naturally aligned. */
    size_t natural = c->size & -c->size;
    c->align = natural < s->page ? natural : s->page;
    c->first = lab_round_up(DESCRIPTOR, c->align);
    c->slab_size = s->slab_size;
    while (c->size > 512 && (c->slab_size - c->first) / c->size < 8)
        c->slab_size *= 2;
    while ((c->slab_size - c->first) / c->size < 1)
        c->slab_size *= 2;
    size_t per = (c->slab_size - c->first) / c->size;
    c->per_slab = per > MAX_OBJECTS ? MAX_OBJECTS : (unsigned)per;
    c->order = (unsigned)__builtin_ctzll(c->slab_size >> s->page_shift);
    return LAB_OK;
}

static struct slab *slab_new(struct slab_policy *s, struct kcache *c)
{
    struct slab *sl = pages_alloc(s, c->order);
    if (!sl)
        return NULL;
    memset(sl, 0, sizeof *sl);
    sl->cache = c;
    sl->list = LIST_EMPTY;
    sl->next = c->lists[LIST_EMPTY];
    if (sl->next)
        sl->next->prev = sl;
    c->lists[LIST_EMPTY] = sl;
    c->counts[LIST_EMPTY]++;
    size_t first = page_of(s, sl);
    for (size_t i = 0; i < ((size_t)1 << c->order); i++)
        s->owner[first + i] = (uintptr_t)sl;
    if (c->ctor)
        for (unsigned i = 0; i < c->per_slab; i++)
            c->ctor((char *)sl + c->first + (size_t)i * c->size);
    return sl;
}

static void *cache_alloc(struct slab_policy *s, struct kcache *c)
{
    struct slab *sl = c->lists[LIST_PARTIAL];
    if (!sl)
        sl = c->lists[LIST_EMPTY];
    if (!sl && !(sl = slab_new(s, c)))
        return NULL;
    unsigned i = 0;
    while (!~sl->used[i / 64])
        i += 64;
    i += (unsigned)__builtin_ctzll(~sl->used[i / 64]);
    LAB_ASSERT(i < c->per_slab, "slab: a slab not full has a free object");
    sl->used[i / 64] |= 1ull << (i % 64);
    sl->inuse++;
    c->in_use++;
    uint32_t to = sl->inuse == c->per_slab ? LIST_FULL : LIST_PARTIAL;
    if (to != sl->list)
        list_move(c, sl, to);
    return (char *)sl + c->first + (size_t)i * c->size;
}

static void cache_free(struct slab_policy *s, struct slab *sl, void *object)
{
    struct kcache *c = sl->cache;
    size_t i = (size_t)((char *)object - ((char *)sl + c->first)) / c->size;
    LAB_ASSERT(i < c->per_slab && (sl->used[i / 64] >> (i % 64)) & 1,
               "slab: free of an object that is in use");
    sl->used[i / 64] &= ~(1ull << (i % 64));
    sl->inuse--;
    c->in_use--;
    uint32_t to = sl->inuse == 0 ? LIST_EMPTY : LIST_PARTIAL;
    if (to == sl->list)
        return;
    if (to == LIST_EMPTY && c->counts[LIST_EMPTY] >= 1) {
        /* One empty slab is kept; the pages of another go back. */
        c->counts[sl->list]--;
        if (sl->prev)
            sl->prev->next = sl->next;
        else
            c->lists[sl->list] = sl->next;
        if (sl->next)
            sl->next->prev = sl->prev;
        pages_release(s, sl, c->order);
        return;
    }
    list_move(c, sl, to);
}

/* ---- kmalloc ---- */

static void *slab_malloc(void *self, size_t size, size_t alignment)
{
    struct slab_policy *s = self;
    if (alignment > s->page)
        return NULL;
    for (int i = 0; i < LAB_KMALLOC_CACHES; i++) {
        struct kcache *c = &s->caches[i];
        if (c->size >= size && c->align >= alignment)
            return cache_alloc(s, c);
    }
    /* kmalloc_large: a power-of-two run of pages of its own. */
    unsigned order = 0;
    while (order < MAX_ORDER && ((size_t)1 << (order + s->page_shift)) < size)
        order++;
    void *run = pages_alloc(s, order);
    if (run)
        s->owner[page_of(s, run)] = ((uintptr_t)order << 2) | PAGE_LARGE;
    return run;
}

static void slab_free(void *self, void *block)
{
    struct slab_policy *s = self;
    uintptr_t o = s->owner[page_of(s, block)];
    LAB_ASSERT(o && !(o & PAGE_FREE), "slab: a freed block's page is owned");
    if (o & PAGE_LARGE)
        pages_release(s, block, (unsigned)(o >> 2));
    else
        cache_free(s, (struct slab *)o, block);
}

static size_t slab_usable(void *self, void *block)
{
    struct slab_policy *s = self;
    uintptr_t o = s->owner[page_of(s, block)];
    if (o & PAGE_LARGE)
        return (size_t)1 << ((o >> 2) + s->page_shift);
    return ((struct slab *)o)->cache->size;
}

static long slab_walk(void *self, struct lab_block *out, size_t capacity)
{
    struct slab_policy *s = self;
    long n = 0;
    for (size_t pg = 0; pg < s->top;) {
        uintptr_t o = s->owner[pg];
        char *at = s->region.base + (pg << s->page_shift);
        if (o & (PAGE_LARGE | PAGE_FREE)) {
            size_t len = (size_t)1 << ((o >> 2) + s->page_shift);
            lab_walk_put(out, capacity, &n, o & PAGE_LARGE ? LAB_BLOCK_USED : LAB_BLOCK_FREE,
                         at, len, at, len);
            pg += len >> s->page_shift;
            continue;
        }
        struct slab *sl = (struct slab *)o;
        struct kcache *c = sl->cache;
        lab_walk_put(out, capacity, &n, LAB_BLOCK_META, at, c->first, at, c->first);
        for (unsigned i = 0; i < c->per_slab; i++) {
            char *obj = at + c->first + (size_t)i * c->size;
            int used = (sl->used[i / 64] >> (i % 64)) & 1;
            lab_walk_put(out, capacity, &n, used ? LAB_BLOCK_USED : LAB_BLOCK_FREE,
                         obj, c->size, obj, c->size);
        }
        size_t end = c->first + (size_t)c->per_slab * c->size;
        if (end < c->slab_size)
            lab_walk_put(out, capacity, &n, LAB_BLOCK_META, at + end, c->slab_size - end,
                         at + end, c->slab_size - end);
        pg += (size_t)1 << c->order;
    }
    lab_walk_tail(&s->region, out, capacity, &n);
    return n;
}

static void slab_stats(void *self, struct lab_stats *st)
{
    struct slab_policy *s = self;
    memset(st, 0, sizeof *st);
    st->footprint = lab_region_footprint(&s->region)
                    + lab_round_up(s->top * sizeof(uintptr_t), s->page);
    st->region_base = (uintptr_t)s->region.base;
    st->region_size = s->region.size;
    /* Free objects count one by one (a request gets one object); released runs whole. */
    for (int i = 0; i < s->n_caches; i++) {
        struct kcache *c = &s->caches[i];
        st->slabs += c->counts[0] + c->counts[1] + c->counts[2];
        uint64_t free_objects = (c->counts[0] + c->counts[1] + c->counts[2]) * c->per_slab
                                - c->in_use;
        st->free_total += free_objects * c->size;
        if (free_objects && c->size > st->free_largest)
            st->free_largest = c->size;
    }
    for (unsigned o = 0; o < MAX_ORDER; o++)
        for (void *run = s->runs[o]; run; run = *(void **)run) {
            size_t len = (size_t)1 << (o + s->page_shift);
            st->free_total += len;
            if (len > st->free_largest)
                st->free_largest = len;
        }
}

static void slab_destroy(void *self)
{
    struct slab_policy *s = self;
    lab_region_unmap(&s->region);
    prm_os_munmap(s->owner, s->owner_mapped);
    lab_state_delete(s, sizeof *s);
}

static const struct lab_ops slab_ops = {
    .malloc = slab_malloc, .free = slab_free, .usable = slab_usable,
    .walk = slab_walk, .stats = slab_stats, .destroy = slab_destroy,
};

int lab_slab_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct slab_policy *s = lab_state_new(sizeof *s);
    if (!s)
        return LAB_ERR_NOMEM;
    s->page = prm_os_page_size();
    s->page_shift = (unsigned)__builtin_ctzll(s->page);
    s->slab_size = c->slab_size;
    size_t size = c->region_size & ~(s->page - 1);
    if (size < s->page) {
        lab_state_delete(s, sizeof *s);
        return LAB_ERR_INVALID;
    }
    s->owner_mapped = lab_round_up((size >> s->page_shift) * sizeof(uintptr_t), s->page);
    if (lab_region_map(&s->region, size) != LAB_OK
        || !(s->owner = prm_os_mmap(s->owner_mapped))) {
        lab_region_unmap(&s->region);
        lab_state_delete(s, sizeof *s);
        return LAB_ERR_NOMEM;
    }
    for (int i = 0; i < LAB_KMALLOC_CACHES; i++) {
        char name[32] = "kmalloc-";
        size_t k = kmalloc_sizes[i];
        char digits[16];
        int d = 0;
        const char *unit = "";
        if (k >= 1024) {
            k /= 1024;
            unit = "k";
        }
        do {
            digits[d++] = (char)('0' + k % 10);
            k /= 10;
        } while (k);
        size_t at = strlen(name);
        while (d)
            name[at++] = digits[--d];
        strcpy(name + at, unit);
        cache_init(s, &s->caches[i], name, kmalloc_sizes[i], LAB_ALIGNMENT);
    }
    s->n_caches = LAB_KMALLOC_CACHES;
    *ops = &slab_ops;
    *self = s;
    return LAB_OK;
}

/* ---- kmem_cache_* ---- */

int lab_slab_cache_create(void *self, const char *name, size_t size, size_t align,
                          void (*ctor)(void *))
{
    struct slab_policy *s = self;
    if (s->n_caches >= LAB_SLAB_MAX_CACHES)
        return -LAB_ERR_INVALID;
    struct kcache *c = &s->caches[s->n_caches];
    if (cache_init(s, c, name, size, align ? align : LAB_ALIGNMENT) != LAB_OK)
        return -LAB_ERR_INVALID;
    c->ctor = ctor;
    return s->n_caches++;
}

void *lab_slab_cache_alloc(void *self, int cache)
{
    struct slab_policy *s = self;
    if (cache < 0 || cache >= s->n_caches)
        return NULL;
    return cache_alloc(s, &s->caches[cache]);
}

void lab_slab_cache_free(void *self, int cache, void *object)
{
    struct slab_policy *s = self;
    uintptr_t o = s->owner[page_of(s, object)];
    LAB_ASSERT(cache >= 0 && cache < s->n_caches && o && !(o & (PAGE_FREE | PAGE_LARGE))
               && ((struct slab *)o)->cache == &s->caches[cache],
               "slab: an object goes back to the cache it came from");
    cache_free(s, (struct slab *)o, object);
}

int lab_slab_cache_info(void *self, int cache, struct lab_cache_info *out)
{
    struct slab_policy *s = self;
    if (cache < 0 || cache >= s->n_caches)
        return LAB_ERR_INVALID;
    struct kcache *c = &s->caches[cache];
    memset(out, 0, sizeof *out);
    memcpy(out->name, c->name, sizeof out->name);
    out->object_size = c->size;
    out->slab_size = c->slab_size;
    out->objects_per_slab = c->per_slab;
    out->slabs_empty = c->counts[LIST_EMPTY];
    out->slabs_partial = c->counts[LIST_PARTIAL];
    out->slabs_full = c->counts[LIST_FULL];
    out->objects_in_use = c->in_use;
    return LAB_OK;
}
