/* stats.c - looking without touching: the heap walker shared with the checker, the
 * chunk/bin/segment/arena walks that Python turns into objects, and the mallinfo2-style
 * statistics. Every walk takes the locks, bounds every step by the segment it is in,
 * and writes only into the caller's arrays. */
#include "prm.h"
#include "internal.h"

/* Visit every chunk of every segment of av, newest segment first, each segment in
 * address order. Returns 0, the first nonzero value a visitor returned, or -1 with the
 * damage described in `why` when a chunk's size leads outside its segment. */
int prmi_walk_heap(prm_arena *av, prmi_visit_fn visit, void *ctx, prmi_text *why)
{
    for (prm_segment *seg = av->segments; seg != NULL; seg = seg->older) {
        int holds_top = seg == av->segments && av->top != NULL;
        uintptr_t end = seg->end;
        prm_chunk *p = segment_first_chunk(seg);
        int seen_top = 0;

        while ((uintptr_t)p < end) {
            if (p == av->top) {
                if (!holds_top || (uintptr_t)p + top_size(av) != end) {
                    prmi_text_str(why, "the top chunk does not end the newest segment");
                    return -1;
                }
                int rc = visit(ctx, seg, p, top_size(av), PRM_KIND_TOP, 0);
                if (rc != 0)
                    return rc;
                seen_top = 1;
                p = (prm_chunk *)end;
                break;
            }
            size_t size = chunk_size(p);
            if (size == PRM_FENCE_SIZE && !holds_top) {
                int rc = visit(ctx, seg, p, size, PRM_KIND_FENCE, 1);
                if (rc != 0)
                    return rc;
                p = chunk_at(p, size);
                continue;
            }
            if (size < PRM_MINSIZE || !aligned_ok(size) || size >= end - (uintptr_t)p) {
                prmi_text_str(why, "chunk ");
                prmi_text_hex(why, (uintptr_t)p);
                prmi_text_str(why, " has size ");
                prmi_text_hex(why, p->size);
                prmi_text_str(why, ", which leads outside its segment (ends ");
                prmi_text_hex(why, end);
                prmi_text_str(why, ")");
                return -1;
            }
            prm_chunk *next = chunk_at(p, size);
            int rc = visit(ctx, seg, p, size, PRM_KIND_CHUNK, prev_inuse(next));
            if (rc != 0)
                return rc;
            p = next;
        }
        if ((uintptr_t)p != end || holds_top != seen_top) {
            prmi_text_str(why, holds_top != seen_top ? "the top chunk is not where the newest segment's chunks lead"
                                                     : "the chunks of a segment do not end at the segment's end");
            return -1;
        }
    }
    return 0;
}

/* ---- prm_walk_chunks -------------------------------------------------------------------- */

typedef struct chunk_sink {
    prm_chunk_info *out;
    size_t capacity;
    size_t count;
    int arena;
} chunk_sink;

static int collect_chunk(void *ctx, prm_segment *seg, prm_chunk *p, size_t size, int kind, int in_use)
{
    chunk_sink *sink = ctx;
    if (sink->count < sink->capacity) {
        prm_chunk_info *info = &sink->out[sink->count];
        info->address = (uintptr_t)p;
        info->size = size;
        info->flags = (uint32_t)(p->size & PRM_FLAG_BITS);
        info->kind = kind;
        info->tagged_in_use = in_use;
        info->arena = sink->arena;
        info->segment = (int32_t)seg->serial;
        info->pad_ = 0;
        info->mapping = 0;
        info->mapping_length = 0;
    }
    sink->count++;
    return 0;
}

long prm_walk_chunks(prm_chunk_info *out, size_t capacity)
{
    chunk_sink sink = { out, capacity, 0, 0 };
    char scratch[160];
    prmi_text why = { scratch, sizeof scratch, 0 };

    FOR_EACH_ARENA(av) {
        sink.arena = av->index;
        prm_lock_acquire(&av->lock);
        int rc = prmi_walk_heap(av, collect_chunk, &sink, &why);
        prm_lock_release(&av->lock);
        if (rc != 0)
            return -1;
    }

    prm_mmap_registry *reg = &prmi_state.mmapped;
    prm_lock_acquire(&reg->lock);
    /* A fork child that found the registry mid-update no longer keeps its list. */
    for (prm_mmap_header *h = reg->list.next; !reg->broken && h != &reg->list; h = h->next) {
        if (sink.count < capacity) {
            prm_chunk_info *info = &out[sink.count];
            info->address = (uintptr_t)h->chunk;
            info->size = chunk_size(h->chunk);
            info->flags = (uint32_t)(h->chunk->size & PRM_FLAG_BITS);
            info->kind = PRM_KIND_MMAPPED;
            info->tagged_in_use = 1;
            info->arena = -1;
            info->segment = -1;
            info->pad_ = 0;
            info->mapping = (uintptr_t)h;
            info->mapping_length = h->length;
        }
        sink.count++;
    }
    prm_lock_release(&reg->lock);
    return (long)sink.count;
}

/* ---- prm_walk_bins ------------------------------------------------------------------------ */

static void put_bin_entry(prm_bin_entry *out, size_t capacity, size_t n, prm_arena *av, int kind,
                          unsigned index, prm_chunk *p)
{
    if (n < capacity) {
        out[n].kind = kind;
        out[n].index = (int32_t)index;
        out[n].arena = av->index;
        out[n].pad_ = 0;
        out[n].address = (uintptr_t)p;
        out[n].size = chunk_size(p);
    }
}

/* One arena's bins, appended at out[*n...]. 0, or -1 if a list is too damaged to follow. */
static int walk_arena_bins(prm_arena *av, prm_bin_entry *out, size_t capacity, size_t *count)
{
    size_t n = *count;
    int result = 0;
    prm_lock_acquire(&av->lock);
    size_t limit = av->system_bytes / PRM_MINSIZE + 1;   /* more entries than that: a cycle */

    for (unsigned i = 0; i < PRM_NFASTBINS && result == 0; i++) {
        size_t steps = 0;
        for (prm_chunk *p = av->fastbins[i]; p != NULL; p = fastbin_next(p)) {
            if (!prmi_plausible_chunk(av, p) || ++steps > limit) {
                result = -1;
                break;
            }
            put_bin_entry(out, capacity, n++, av, PRM_BIN_FAST, i, p);
        }
    }
    for (unsigned i = PRM_UNSORTED_BIN; i <= PRM_LAST_BIN && result == 0; i++) {
        prm_chunk *bin = bin_at(av, i);
        int kind = i == PRM_UNSORTED_BIN ? PRM_BIN_UNSORTED : i < PRM_FIRST_LARGE_BIN ? PRM_BIN_SMALL : PRM_BIN_LARGE;
        size_t steps = 0;
        for (prm_chunk *p = bin->fd; p != bin; p = p->fd) {
            if (!prmi_plausible_chunk(av, p) || ++steps > limit) {
                result = -1;
                break;
            }
            put_bin_entry(out, capacity, n++, av, kind, i, p);
        }
    }
    prm_lock_release(&av->lock);
    *count = n;
    return result;
}

long prm_walk_bins(prm_bin_entry *out, size_t capacity)
{
    size_t n = 0;
    FOR_EACH_ARENA(av) {
        if (walk_arena_bins(av, out, capacity, &n) != 0)
            return -1;
    }
    return (long)n;
}

/* ---- prm_walk_segments and prm_arenas ----------------------------------------------------------- */

long prm_walk_segments(prm_segment_info *out, size_t capacity)
{
    size_t n = 0;
    FOR_EACH_ARENA(av) {
        prm_lock_acquire(&av->lock);
        for (prm_segment *seg = av->segments; seg != NULL; seg = seg->older, n++) {
            if (n < capacity) {
                out[n].start = seg->raw_start;
                out[n].end = seg->end;
                out[n].kind = (int32_t)seg->kind;
                out[n].serial = (int32_t)seg->serial;
                out[n].arena = av->index;
                out[n].holds_top = seg == av->segments && av->top != NULL;
            }
        }
        prm_lock_release(&av->lock);
    }
    return (long)n;
}

/* Free chunks and bytes in the regular bins and the fast bins (under the lock). */
typedef struct free_totals {
    size_t chunks, bytes, fast_chunks, fast_bytes;
} free_totals;

static free_totals count_free(prm_arena *av)
{
    free_totals t = { 0, 0, 0, 0 };
    size_t limit = av->system_bytes / PRM_MINSIZE + 1;
    for (unsigned i = 0; i < PRM_NFASTBINS; i++) {
        size_t steps = 0;
        for (prm_chunk *p = av->fastbins[i]; p != NULL && prmi_plausible_chunk(av, p) && ++steps <= limit; p = fastbin_next(p)) {
            t.fast_chunks++;
            t.fast_bytes += chunk_size(p);
        }
    }
    for (unsigned i = PRM_UNSORTED_BIN; i <= PRM_LAST_BIN; i++) {
        prm_chunk *bin = bin_at(av, i);
        size_t steps = 0;
        for (prm_chunk *p = bin->fd; p != bin && prmi_plausible_chunk(av, p) && ++steps <= limit; p = p->fd) {
            t.chunks++;
            t.bytes += chunk_size(p);
        }
    }
    return t;
}

long prm_arenas(prm_arena_info *out, size_t capacity)
{
    size_t n = 0;
    FOR_EACH_ARENA(av) {
        if (n < capacity) {
            prm_arena_info *info = &out[n];
            prm_lock_acquire(&av->lock);
            free_totals t = count_free(av);
            size_t top = av->top != NULL ? top_size(av) : 0;
            info->index = av->index;
            info->corrupt = av->corrupt;
            info->top = (uintptr_t)av->top;
            info->top_size = top;
            info->system_bytes = av->system_bytes;
            info->max_system_bytes = av->max_system_bytes;
            info->in_use_bytes = av->in_use_bytes;
            info->in_use_chunks = av->in_use_chunks;
            info->free_bytes = t.bytes + t.fast_bytes + top;
            info->free_chunks = t.chunks + t.fast_chunks;
            info->fast_chunks = t.fast_chunks;
            info->segments = av->segment_count;
            info->attached_threads = av->attached_threads;
            prm_lock_release(&av->lock);
        }
        n++;
    }
    return (long)n;
}

/* ---- prm_get_stats ------------------------------------------------------------------------ */

/* Sums over every arena, as glibc's mallinfo2; keepcost is the main arena's top. */
void prm_get_stats(prm_stats *out)
{
    prm_params *mp = params();
    prm_mmap_registry *reg = &prmi_state.mmapped;
    *out = (prm_stats){ 0 };

    FOR_EACH_ARENA(av) {
        prm_lock_acquire(&av->lock);
        free_totals t = count_free(av);
        size_t top = av->top != NULL ? top_size(av) : 0;
        out->arena += av->system_bytes;
        out->ordblks += t.chunks + (top > 0 ? 1 : 0);   /* glibc counts top as a free block */
        out->smblks += t.fast_chunks;
        out->fsmblks += t.fast_bytes;
        out->fordblks += t.bytes + t.fast_bytes + top;
        if (av->index == 0)
            out->keepcost = top;
        out->in_use_bytes += av->in_use_bytes;
        out->in_use_chunks += av->in_use_chunks;
        out->max_arena += av->max_system_bytes;
        out->segments += av->segment_count;
        out->trims += av->trims;
        out->consolidations += av->consolidations;
        out->segments_opened += av->segments_opened;
        out->discards += av->discards;
        out->remote_pending += prmi_remote_pending(av);
        out->remote_frees += av->remote_frees;
        out->arenas++;
        prm_lock_release(&av->lock);
    }
    out->uordblks = out->arena - out->fordblks;
    out->max_fast = mp->max_fast;
    out->top_pad = mp->top_pad;
    out->n_mmaps_max = mp->n_mmaps_max;
    out->perturb_byte = mp->perturb_byte;
    out->check_action = mp->check_action;
    out->canary = mp->canary;
    out->arena_test = mp->arena_test;
    out->arena_max = mp->arena_max;
    out->tcache_count = mp->tcache_count;
    out->tcache_grow = mp->tcache_grow;
    out->tcache_raises = __atomic_load_n(&prmi_state.tcache_raises, __ATOMIC_RELAXED);
    out->tcache_drains = __atomic_load_n(&prmi_state.tcache_drains, __ATOMIC_RELAXED);
    out->tcache_fills = __atomic_load_n(&prmi_state.tcache_fills, __ATOMIC_RELAXED);
    out->pagemap_bytes = prmi_pagemap_bytes();

    out->mmap_threshold = __atomic_load_n(&mp->mmap_threshold, __ATOMIC_RELAXED);
    out->trim_threshold = __atomic_load_n(&mp->trim_threshold, __ATOMIC_RELAXED);
    out->dynamic_thresholds = !__atomic_load_n(&mp->no_dyn_threshold, __ATOMIC_RELAXED);

    prm_lock_acquire(&reg->lock);
    out->hblks = reg->count;
    out->hblkhd = reg->mapped_bytes;
    out->max_hblks = reg->max_count;
    out->max_hblkhd = reg->max_mapped_bytes;
    out->in_use_bytes += reg->chunk_bytes;
    out->in_use_chunks += reg->count;
    prm_lock_release(&reg->lock);

    prm_os_counters os;
    prm_os_get_counters(&os);
    out->brk_reads = os.brk_reads;
    out->brk_moves = os.brk_moves;
    out->brk_failures = os.brk_failures;
    out->mmap_calls = os.mmap_calls;
    out->mmap_failures = os.mmap_failures;
    out->munmap_calls = os.munmap_calls;
    out->mremap_calls = os.mremap_calls;
    out->mremap_failures = os.mremap_failures;
    out->discard_calls = os.discard_calls;
    out->mincore_calls = os.mincore_calls;
    out->tombstone_calls = os.tombstone_calls;
    out->brk_bytes_grown = os.brk_bytes_grown;
    out->brk_bytes_shrunk = os.brk_bytes_shrunk;
    out->mmap_bytes = os.mmap_bytes;
    out->munmap_bytes = os.munmap_bytes;
    out->discard_bytes = os.discard_bytes;
}

/* ---- prm_ledger ------------------------------------------------------------------------- */

/* Bytes of [start, end) on pages the kernel reports resident. */
static size_t resident_bytes(uintptr_t start, uintptr_t end)
{
    size_t page = prm_os_page_size();
    unsigned char vec[256];
    size_t total = 0;
    uintptr_t first = align_down(start, page);
    while (first < end) {
        size_t pages = (align_up(end, page) - first) / page;
        if (pages > sizeof vec)
            pages = sizeof vec;
        if (prm_os_mincore((void *)first, pages * page, vec) != 0)
            return total;   /* not mapped: nothing resident there */
        for (size_t i = 0; i < pages; i++) {
            uintptr_t lo = first + i * page, hi = lo + page;
            if (vec[i] & 1)
                total += (hi < end ? hi : end) - (lo > start ? lo : start);
        }
        first += pages * page;
    }
    return total;
}

typedef struct ledger_walk {
    prm_ledger_info *out;
    size_t tagged_used_bytes, tagged_used_resident;
} ledger_walk;

static int ledger_chunk(void *ctx, prm_segment *seg, prm_chunk *p, size_t size, int kind, int in_use)
{
    ledger_walk *w = ctx;
    (void)seg;
    size_t resident = resident_bytes((uintptr_t)p, (uintptr_t)p + size);
    if (kind == PRM_KIND_TOP) {
        w->out->top_bytes += size;
        w->out->top_resident += resident;
    } else if (kind == PRM_KIND_CHUNK && in_use) {
        w->tagged_used_bytes += size;
        w->tagged_used_resident += resident;
    } else if (kind == PRM_KIND_CHUNK) {
        w->out->free_binned_bytes += size;
        w->out->free_binned_resident += resident;
    }
    return 0;
}

/* One arena's part of the ledger. 0, or -1 if its heap cannot be walked. */
static int ledger_arena(prm_arena *av, prm_ledger_info *out, ledger_walk *w)
{
    char scratch[160];
    prmi_text why = { scratch, sizeof scratch, 0 };
    prm_lock_acquire(&av->lock);
    int rc = prmi_walk_heap(av, ledger_chunk, w, &why);
    size_t limit = av->system_bytes / PRM_MINSIZE + 1;
    for (unsigned i = 0; i < PRM_NFASTBINS && rc == 0; i++) {
        size_t steps = 0;
        for (prm_chunk *p = av->fastbins[i]; p != NULL; p = fastbin_next(p)) {
            if (!prmi_plausible_chunk(av, p) || ++steps > limit) {
                rc = -1;
                break;
            }
            out->free_fast_bytes += chunk_size(p);
            out->free_fast_resident += resident_bytes((uintptr_t)p, (uintptr_t)p + chunk_size(p));
        }
    }
    out->heap_bytes += av->system_bytes;
    prm_lock_release(&av->lock);
    return rc;
}

int prm_ledger(prm_ledger_info *out)
{
    ledger_walk w = { out, 0, 0 };
    *out = (prm_ledger_info){ 0 };
    FOR_EACH_ARENA(av) {
        if (ledger_arena(av, out, &w) != 0)
            return -1;
    }
    if (w.tagged_used_bytes < out->free_fast_bytes ||
        w.tagged_used_bytes + out->free_binned_bytes + out->top_bytes > out->heap_bytes)
        return -1;   /* the walk disagrees with what the arenas hold: damaged */
    out->in_use_bytes = w.tagged_used_bytes - out->free_fast_bytes;
    out->in_use_resident = w.tagged_used_resident - out->free_fast_resident;
    out->overhead_bytes = out->heap_bytes - out->in_use_bytes - out->free_fast_bytes -
                          out->free_binned_bytes - out->top_bytes;

    prm_mmap_registry *reg = &prmi_state.mmapped;
    prm_lock_acquire(&reg->lock);
    for (prm_mmap_header *h = reg->list.next; !reg->broken && h != &reg->list; h = h->next) {
        out->mmapped_bytes += h->length;
        out->mmapped_in_use_bytes += chunk_size(h->chunk);
        out->mmapped_resident += resident_bytes((uintptr_t)h, (uintptr_t)h + h->length);
        out->mmapped_chunks++;
    }
    prm_lock_release(&reg->lock);

    prm_os_counters os;
    prm_os_get_counters(&os);
    out->released_by_trim = os.brk_bytes_shrunk;
    out->released_by_munmap = os.munmap_bytes;
    out->released_by_discard = os.discard_bytes;
    return 0;
}
