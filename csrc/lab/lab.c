/* lab.c - the lab's front door: makes a policy from its configuration (defaults and
 * range checks), dispatches the common interface to the policy's table of operations,
 * and holds the null policy (the replay loop's baseline). */
#include <string.h>

#include "lab_internal.h"

#ifdef LAB_DEBUG
void lab_invariant_failed(const char *file, int line, const char *invariant)
{
    /* Never allocates: the heap being checked may be the broken thing. */
    char text[256];
    char number[16];
    int i = 15;
    number[i] = 0;
    do {
        number[--i] = (char)('0' + line % 10);
        line /= 10;
    } while (line && i > 0);
    size_t n = 0;
    const char *parts[] = {"lab: broken invariant: ", invariant, " (", file, ":",
                           number + i, ")\n"};
    for (size_t k = 0; k < sizeof parts / sizeof parts[0]; k++)
        for (const char *c = parts[k]; *c && n < sizeof text - 1; c++)
            text[n++] = *c;
    prm_os_write_stderr(text, n);
    prm_os_abort();
}
#endif

/* ---- The null policy: fake, distinct, 16-aligned addresses that are never touched, so
 * that a replay with it (verify off) costs exactly the loop's own work. ---- */
struct null_policy {
    uintptr_t next;
};

static void *null_malloc(void *self, size_t size, size_t alignment)
{
    struct null_policy *p = self;
    p->next += 64;
    return (void *)p->next;
}

static void *null_calloc(void *self, size_t size)
{
    return null_malloc(self, size, LAB_ALIGNMENT);      /* never touched: no zeros */
}

static void null_free(void *self, void *block) { }
static void *null_realloc(void *self, void *block, size_t size) { return block; }
static size_t null_usable(void *self, void *block) { return 0; }

static void null_stats(void *self, struct lab_stats *out)
{
    memset(out, 0, sizeof *out);
}

static void null_destroy(void *self)
{
    prm_os_munmap(self, prm_os_page_size());
}

static const struct lab_ops null_ops = {
    .malloc = null_malloc, .free = null_free, .realloc = null_realloc,
    .usable = null_usable, .walk = NULL, .stats = null_stats, .destroy = null_destroy,
    .calloc = null_calloc,
};

static int null_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct null_policy *p = prm_os_mmap(prm_os_page_size());
    if (!p)
        return LAB_ERR_NOMEM;
    p->next = (uintptr_t)1 << 40;
    *ops = &null_ops;
    *self = p;
    return LAB_OK;
}

/* ---- Construction ---- */

static int is_power_of_two(uint64_t n)
{
    return n && !(n & (n - 1));
}

int lab_policy_new(const struct lab_config *config, struct lab_policy **out)
{
    struct lab_config c = *config;
    *out = NULL;
    if (!c.region_size)
        c.region_size = (uint64_t)256 << 20;
    if (!c.min_block)
        c.min_block = 16;
    if (!c.pool_size) {
        /* 64 KiB, or the whole (power-of-two) region when that is smaller. */
        c.pool_size = 64 << 10;
        while (c.pool_size > c.region_size && c.pool_size > c.min_block)
            c.pool_size /= 2;
    }
    if (!c.block_size)
        c.block_size = 256;
    if (!c.slab_size)
        c.slab_size = 4096;
    if (c.region_size < 4096 || c.region_size > ((uint64_t)1 << 46)
        || !is_power_of_two(c.min_block) || c.min_block < 16
        || !is_power_of_two(c.pool_size) || c.pool_size < c.min_block
        || c.block_size % LAB_ALIGNMENT || c.block_size > c.region_size
        || !is_power_of_two(c.slab_size) || c.slab_size < prm_os_page_size())
        return LAB_ERR_INVALID;

    static int (*const create[LAB_KIND_COUNT])(const struct lab_config *,
                                               const struct lab_ops **, void **) = {
        [LAB_MINIMAL] = lab_minimal_create,
        [LAB_FIRST_FIT] = lab_freelist_create, [LAB_NEXT_FIT] = lab_freelist_create,
        [LAB_BEST_FIT] = lab_freelist_create, [LAB_WORST_FIT] = lab_freelist_create,
        [LAB_BUDDY] = lab_buddy_create, [LAB_BUDDY_POOL] = lab_buddy_create,
        [LAB_BITMAP] = lab_bitmap_create, [LAB_SLAB] = lab_slab_create,
        [LAB_PTMALLOC] = lab_real_create, [LAB_GLIBC] = lab_real_create,
        [LAB_NULL] = null_create,
    };
    if (c.kind < 0 || c.kind >= LAB_KIND_COUNT)
        return LAB_ERR_INVALID;
    /* The handle itself lives in its own page: the lab never uses the process's
     * malloc for a policy, so glibc's entry measures only the trace's blocks. */
    struct lab_policy *policy = prm_os_mmap(prm_os_page_size());
    if (!policy)
        return LAB_ERR_NOMEM;
    policy->kind = c.kind;
    int status = create[c.kind](&c, &policy->ops, &policy->self);
    if (status != LAB_OK) {
        prm_os_munmap(policy, prm_os_page_size());
        return status;
    }
    *out = policy;
    return LAB_OK;
}

void lab_policy_delete(struct lab_policy *policy)
{
    if (!policy)
        return;
    policy->ops->destroy(policy->self);
    prm_os_munmap(policy, prm_os_page_size());
}

/* ---- The common interface ---- */

void *lab_malloc(struct lab_policy *policy, size_t size)
{
    return policy->ops->malloc(policy->self, size, LAB_ALIGNMENT);
}

void *lab_memalign(struct lab_policy *policy, size_t alignment, size_t size)
{
    if (!is_power_of_two(alignment))
        return NULL;
    if (alignment < LAB_ALIGNMENT)
        alignment = LAB_ALIGNMENT;
    return policy->ops->malloc(policy->self, size, alignment);
}

void *lab_calloc(struct lab_policy *policy, size_t size)
{
    if (policy->ops->calloc)
        return policy->ops->calloc(policy->self, size);
    /* Region policies recycle their memory, so the zeros are written here. */
    void *p = policy->ops->malloc(policy->self, size, LAB_ALIGNMENT);
    if (p)
        memset(p, 0, size);
    return p;
}

void lab_free(struct lab_policy *policy, void *block)
{
    if (block)
        policy->ops->free(policy->self, block);
}

size_t lab_usable_size(struct lab_policy *policy, void *block)
{
    return block ? policy->ops->usable(policy->self, block) : 0;
}

void *lab_realloc(struct lab_policy *policy, void *block, size_t size)
{
    if (!block)
        return lab_malloc(policy, size);
    if (policy->ops->realloc)
        return policy->ops->realloc(policy->self, block, size);
    size_t usable = policy->ops->usable(policy->self, block);
    if (size <= usable && size >= usable / 2)
        return block;       /* fits, and moving would not save half of it */
    void *moved = policy->ops->malloc(policy->self, size, LAB_ALIGNMENT);
    if (!moved)
        return size <= usable ? block : NULL;   /* a shrink that cannot move stays */
    memcpy(moved, block, size < usable ? size : usable);
    policy->ops->free(policy->self, block);
    return moved;
}

long lab_walk(struct lab_policy *policy, struct lab_block *out, size_t capacity)
{
    if (!policy->ops->walk)
        return -LAB_ERR_UNSUPPORTED;
    return policy->ops->walk(policy->self, out, capacity);
}

void lab_stats(struct lab_policy *policy, struct lab_stats *out)
{
    policy->ops->stats(policy->self, out);
}

/* ---- Slab caches ---- */

int lab_kmem_cache_create(struct lab_policy *policy, const char *name, size_t size,
                          size_t align, void (*ctor)(void *object))
{
    if (policy->kind != LAB_SLAB)
        return -LAB_ERR_INVALID;
    return lab_slab_cache_create(policy->self, name, size, align, ctor);
}

void *lab_kmem_cache_alloc(struct lab_policy *policy, int cache)
{
    return policy->kind == LAB_SLAB ? lab_slab_cache_alloc(policy->self, cache) : NULL;
}

void lab_kmem_cache_free(struct lab_policy *policy, int cache, void *object)
{
    if (policy->kind == LAB_SLAB && object)
        lab_slab_cache_free(policy->self, cache, object);
}

int lab_kmem_cache_info(struct lab_policy *policy, int cache, struct lab_cache_info *out)
{
    if (policy->kind != LAB_SLAB)
        return LAB_ERR_INVALID;
    return lab_slab_cache_info(policy->self, cache, out);
}
