/* lab_real.c - the two real allocators as lab policies: our ptmalloc core (prm_malloc &
 * co.) and the process's glibc malloc. Their blocks are not in a region of ours, so they
 * have no walk; their footprint is what their own accounting says they hold from the OS
 * (heap segments + mmapped chunks: prm_get_stats' arena + hblkhd, glibc's mallinfo2
 * arena + hblkhd) minus what it said when the policy was made. */
#include <malloc.h>
#include <stdlib.h>

#include "lab_internal.h"
#include "../core/prm.h"

struct real {
    int glibc;
    int64_t baseline;
};

static int64_t held(const struct real *r)
{
    if (r->glibc) {
        struct mallinfo2 m = mallinfo2();
        return (int64_t)(m.arena + m.hblkhd);
    }
    prm_stats s;
    prm_get_stats(&s);
    return (int64_t)(s.arena + s.hblkhd);
}

static void *real_malloc(void *self, size_t size, size_t alignment)
{
    struct real *r = self;
    if (alignment > LAB_ALIGNMENT)
        return r->glibc ? memalign(alignment, size) : prm_memalign(alignment, size);
    return r->glibc ? malloc(size) : prm_malloc(size);
}

static void *real_calloc(void *self, size_t size)
{
    return ((struct real *)self)->glibc ? calloc(1, size) : prm_calloc(1, size);
}

static void real_free(void *self, void *block)
{
    if (((struct real *)self)->glibc)
        free(block);
    else
        prm_free(block);
}

static void *real_realloc(void *self, void *block, size_t size)
{
    if (!size)
        size = 1;       /* realloc(p, 0) would free p: the trace's object lives on */
    return ((struct real *)self)->glibc ? realloc(block, size) : prm_realloc(block, size);
}

static size_t real_usable(void *self, void *block)
{
    return ((struct real *)self)->glibc ? malloc_usable_size(block) : prm_usable_size(block);
}

static void real_stats(void *self, struct lab_stats *s)
{
    struct real *r = self;
    memset(s, 0, sizeof *s);
    int64_t now = held(r) - r->baseline;
    s->footprint = now > 0 ? (uint64_t)now : 0;
    s->free_total = UINT64_MAX;
    s->free_largest = UINT64_MAX;
}

static void real_destroy(void *self)
{
    lab_state_delete(self, sizeof(struct real));
}

static const struct lab_ops real_ops = {
    .malloc = real_malloc, .free = real_free, .realloc = real_realloc,
    .usable = real_usable, .walk = NULL, .stats = real_stats, .destroy = real_destroy,
    .calloc = real_calloc,
};

int lab_real_create(const struct lab_config *c, const struct lab_ops **ops, void **self)
{
    struct real *r = lab_state_new(sizeof *r);
    if (!r)
        return LAB_ERR_NOMEM;
    r->glibc = c->kind == LAB_GLIBC;
    /* Give back what the allocator holds free (the top, empty pages) before the
     * baseline: what it holds then, it reuses first, which would hide footprint.
     * lab.replay runs these two in a fresh process for the same reason. */
    if (r->glibc)
        malloc_trim(0);
    else
        prm_malloc_trim(0);
    r->baseline = held(r);
    *ops = &real_ops;
    *self = r;
    return LAB_OK;
}
