/* arena.c - arenas and the memory under them: the allocator's global state, arena
 * initialisation, growing the main arena's heap with brk (segments, fence posts, the
 * mmap fallback when brk is refused) and trimming the break back down, and the
 * non-main arenas' heaps (reserved aligned, committed and decommitted as top moves). */
#include <string.h>

#include "hardened.h"
#include "internal.h"

prm_state prmi_state;

PRM_INTERNAL prm_lock prmi_init_lock = PRM_LOCK_INIT;

/* Each build's default for the per-thread caches: on in the LD_PRELOAD library, off in
 * the Python build, whose heap walks and statistics treat a cached chunk as in use. */
#ifndef PRM_DEFAULT_TCACHE
#define PRM_DEFAULT_TCACHE (PRM_RECOVERABLE ? 0 : PRM_DEFAULT_TCACHE_COUNT)
#endif
/* Hardened mode from the start (benchmarks/bench_checks.py builds such a library to
 * measure it); otherwise hardened=1 in the options or M_HARDENED turn it on. */
#ifndef PRM_DEFAULT_HARDENED
#define PRM_DEFAULT_HARDENED 0
#endif

void prmi_arena_init(prm_arena *av, int index)
{
    av->index = index;
    prmi_bins_init(av);
    av->top = NULL;
    av->segments = NULL;
    av->segment_hint = NULL;
    av->segment_count = 0;
}

/* First use of the allocator: defaults for the parameters, the main arena's bins and the
 * registry of mmapped chunks. Marked cold: it runs once. */
static PRM_COLD void initialize(void)
{
    prm_lock_acquire(&prmi_init_lock);
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE)) {
        prm_params *mp = params();
        mp->max_fast = max_fast_for_request(PRM_DEFAULT_MXFAST);
        mp->trim_threshold = PRM_DEFAULT_TRIM_THRESHOLD;
        mp->top_pad = PRM_DEFAULT_TOP_PAD;
        mp->mmap_threshold = PRM_DEFAULT_MMAP_THRESHOLD;
        mp->n_mmaps_max = PRM_DEFAULT_MMAP_MAX;
        mp->no_dyn_threshold = 0;
        mp->perturb_byte = 0;
        mp->check_action = PRM_DEFAULT_CHECK_ACTION;
        mp->hardened = PRM_DEFAULT_HARDENED;
        mp->canary = PRM_DEFAULT_HARDENED;
        mp->debug = PRM_DEFAULT_HARDENED;
        mp->arena_test = 8;
        mp->arena_max = 0;
        mp->tcache_count = PRM_DEFAULT_TCACHE;
        mp->tcache_grow = 1;
        prmi_state.arena_count = 1;

        prm_mmap_registry *reg = &prmi_state.mmapped;
        reg->list.next = reg->list.prev = &reg->list;

        prmi_arena_init(&prmi_state.main_arena, 0);
        if (prmi_configure != NULL)
            prmi_configure();
        if (mp->hardened)
            prmi_faults_install();   /* a build hardened from the start (options.c does the rest) */
        prmi_threads_init();
        __atomic_store_n(&prmi_state.main_arena.initialized, 1, __ATOMIC_RELEASE);
    }
    prm_lock_release(&prmi_init_lock);
}

prm_arena *prmi_main_arena(void)
{
    prm_arena *av = &prmi_state.main_arena;
    if (prm_unlikely(!__atomic_load_n(&av->initialized, __ATOMIC_ACQUIRE)))
        initialize();
    return av;
}

/* The segment holding addr, or NULL. Segments are usually few, but an arena whose heap
 * grew in many pieces (mmap fallbacks) has a long list. */
prm_segment *prmi_segment_of(prm_arena *av, uintptr_t addr)
{
    /* The segment found last first: the link checks ask about chunks near each other. */
    prm_segment *hint = __atomic_load_n(&av->segment_hint, __ATOMIC_RELAXED);
    if (hint != NULL && addr >= (uintptr_t)hint && addr < __atomic_load_n(&hint->end, __ATOMIC_RELAXED))
        return hint;
    for (prm_segment *seg = av->segments; seg != NULL; seg = seg->older)
        if (addr >= (uintptr_t)seg && addr < __atomic_load_n(&seg->end, __ATOMIC_RELAXED)) {
            __atomic_store_n(&av->segment_hint, seg, __ATOMIC_RELAXED);
            return seg;
        }
    return NULL;
}

/* Is there a chunk header's worth, [addr, addr + 16), inside one of av's segments, chunk
 * aligned? Lets walks and checks test an address before reading it. */
int prmi_plausible_chunk(prm_arena *av, const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (!aligned_ok(a))
        return 0;
    prm_segment *seg = prmi_segment_of(av, a);
    return seg != NULL && a >= (uintptr_t)segment_first_chunk(seg) && a + PRM_CHUNK_HDR <= seg->end;
}

/* Could a bin link point here: one of av's bin heads, or a whole free-chunk record
 * (header and the four links) inside a segment? */
int prmi_plausible_link(prm_arena *av, const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (a >= (uintptr_t)&av->bins[0] && a < (uintptr_t)&av->bins[PRM_NBINS])
        return ((a - (uintptr_t)&av->bins[0]) % sizeof(prm_chunk)) == 0;
    if (!aligned_ok(a))
        return 0;
    prm_segment *seg = prmi_segment_of(av, a);
    return seg != NULL && a >= (uintptr_t)segment_first_chunk(seg) && a + sizeof(prm_chunk) <= seg->end;
}

static void account_system(prm_arena *av, size_t added)
{
    av->system_bytes += added;
    if (av->system_bytes > av->max_system_bytes)
        av->max_system_bytes = av->system_bytes;
}

/* Close a segment that no longer holds top: its old top becomes an ordinary free chunk
 * followed by fence posts, so nothing ever coalesces past the segment's end. The new
 * top is already in place, so freeing the old one can neither merge into it nor trim. */
static void close_segment(prm_arena *av, prm_chunk *old_top)
{
    size_t size = chunk_size(old_top);        /* >= PRM_MINSIZE: top is never smaller */
    size_t keep = size >= PRM_MINSIZE + 2 * PRM_FENCE_SIZE ? size - 2 * PRM_FENCE_SIZE : 0;

    for (size_t offset = keep; offset < size; offset += PRM_FENCE_SIZE)
        set_head(chunk_at(old_top, offset), PRM_FENCE_SIZE | PRM_PREV_INUSE);
    if (keep > 0) {
        /* old_top's P bit stays set: a free chunk below top would have merged into it. */
        set_head(old_top, keep | PRM_PREV_INUSE | (old_top->size & PRM_NON_MAIN));
        prmi_free_merge(av, old_top);
    }
}

/* The arena of a chunk: the main arena, or, for a chunk with the A bit, the arena named
 * by the header of the heap the chunk lies in. */
prm_arena *prmi_arena_of(prm_chunk *p)
{
    if (!chunk_non_main(p))
        return &prmi_state.main_arena;
    prm_segment *heap = (prm_segment *)((uintptr_t)p & ~(uintptr_t)(PRM_HEAP_MAX - 1));
    return heap->arena;
}

/* Start a segment in [raw_start, raw_end), `header` bytes of it (at least the segment
 * record) before the first chunk, and make the rest the top chunk. */
static void open_segment(prm_arena *av, uintptr_t raw_start, uintptr_t raw_end, uint32_t kind,
                         size_t header)
{
    uintptr_t base = align_up(raw_start, PRM_ALIGN);
    prm_segment *seg = (prm_segment *)base;
    seg->older = av->segments;
    seg->raw_start = raw_start;
    seg->end = align_down(raw_end, PRM_ALIGN);
    seg->arena = av;
    seg->first = (prm_chunk *)(base + header);
    seg->kind = kind;
    seg->serial = av->segment_count++;
    av->segments = seg;

    prm_chunk *first = segment_first_chunk(seg);
    set_head(first, (seg->end - (uintptr_t)first) | PRM_PREV_INUSE | (av->index ? PRM_NON_MAIN : 0));
    av->top = first;
    prmi_pagemap_mark(raw_start, raw_end, prmi_arena_owner(av->index));
    account_system(av, raw_end - raw_start);
}

/* brk was refused: get the space with mmap instead, as glibc's MORECORE fallback does. */
static int grow_with_mmap(prm_arena *av, size_t nb, size_t pad)
{
    size_t page = prm_os_page_size();
    size_t want = nb + pad + sizeof(prm_segment) + PRM_MINSIZE + 2 * PRM_ALIGN;
    if (want < PRM_MMAP_SEGMENT_MIN)
        want = PRM_MMAP_SEGMENT_MIN;
    want = align_up(want, page);
    void *mem = prm_os_mmap(want);
    if (mem == NULL)
        return 0;
    if (prmi_pagemap_reserve((uintptr_t)mem, (uintptr_t)mem + want) != 0) {
        prm_os_munmap(mem, want);
        return 0;
    }
    prm_os_name_mapping(mem, want, PRM_MAP_NAME_HEAP);
    prm_chunk *old_top = av->top;
    open_segment(av, (uintptr_t)mem, (uintptr_t)mem + want, PRM_SEG_MMAP, sizeof(prm_segment));
    if (old_top != NULL) {
        close_segment(av, old_top);
        av->segments_opened++;
    }
    return 1;
}

/* Make top large enough to split off a chunk of nb bytes (top keeps >= MINSIZE).
 *
 * 1. Read the real break from the kernel. If it is exactly the end of our top (and our
 *    top lives in a brk segment), only the shortfall is requested: top grows in place.
 * 2. Otherwise somebody else (glibc's malloc in the same process) moved the break since
 *    our last segment: the new memory starts a new segment and the old top is closed
 *    with fence posts and freed into the bins.
 * 3. The new break is page aligned; top_pad extra bytes are requested to save calls.
 * 4. If the kernel refuses to move the break, fall back to an mmapped segment.
 * Returns 1 on success, 0 with errno ENOMEM when the OS refuses both. */
static int grow_nonmain(prm_arena *av, size_t nb);

/* The heap has to grow: if free trimmed it a moment ago, hold more back next time. */
static void note_regrowth(prm_arena *av)
{
    if (!PRM_TRIM_HYSTERESIS || av->last_trim_ns == 0)
        return;
    if (prm_os_monotonic_ns() - av->last_trim_ns < PRM_TRIM_REGROW_NS) {
        size_t hold = av->trim_hold * 2 > av->last_trim_bytes ? av->trim_hold * 2 : av->last_trim_bytes;
        av->trim_hold = hold < PRM_TRIM_HOLD_MAX ? hold : PRM_TRIM_HOLD_MAX;
    }
    av->last_trim_ns = 0;
}

/* The trim free makes when top passes the trim threshold (glibc's): keeps top_pad, and
 * in the LD_PRELOAD build the arena's trim hold as well (internal.h). */
int prmi_auto_trim(prm_arena *av)
{
    if (!PRM_TRIM_HYSTERESIS)
        return prmi_systrim(av, params()->top_pad);
    uint64_t now = prm_os_monotonic_ns();
    /* Trims in a row with no regrowth between count as one (a burst of frees trims at
     * each merge); the hold decays once the heap has stayed trimmed for a while. */
    int in_a_row = av->last_trim_ns != 0;
    if (in_a_row && now - av->last_trim_ns > PRM_TRIM_DECAY_NS)
        av->trim_hold /= 2;
    size_t before = av->system_bytes;
    size_t pad = params()->top_pad;
    pad = pad > SIZE_MAX - av->trim_hold ? SIZE_MAX : pad + av->trim_hold;
    int released = prmi_systrim(av, pad);
    if (released) {
        size_t bytes = before - av->system_bytes;
        av->last_trim_bytes = in_a_row ? av->last_trim_bytes + bytes : bytes;
        av->last_trim_ns = now;
    }
    return released;
}

int prmi_grow_heap(prm_arena *av, size_t nb)
{
    note_regrowth(av);
    if (av->index != 0)
        return grow_nonmain(av, nb);
    size_t page = prm_os_page_size();
    size_t pad = params()->top_pad;
    if (pad > PRM_MAX_REQUEST - nb)   /* an absurd M_TOP_PAD must not wrap the arithmetic */
        pad = 0;
    size_t want = nb + pad + PRM_MINSIZE;
    uintptr_t current = prm_os_brk_current();
    uintptr_t old_end = av->top ? (uintptr_t)av->top + top_size(av) : 0;
    int contiguous = av->top != NULL && av->segments->kind == PRM_SEG_BRK && current == old_end;

    if (contiguous)
        want -= top_size(av) < want ? top_size(av) : want;
    else
        want += sizeof(prm_segment) + 2 * PRM_ALIGN;

    if (current != 0 && want <= PRM_MAX_REQUEST && current + want > current) {
        uintptr_t target = align_up(current + want, page);
        if (target > current && prmi_pagemap_reserve(current, target) == 0 &&
            prm_os_brk_move(current, target) == target) {
            if (contiguous) {
                size_t added = target - current;
                set_head(av->top, (top_size(av) + added) | PRM_PREV_INUSE);
                __atomic_store_n(&av->segments->end, target, __ATOMIC_RELAXED);   /* refresh_range reads it unlocked */
                prmi_pagemap_mark(current, target, prmi_arena_owner(av->index));
                account_system(av, added);
            } else {
                prm_chunk *old_top = av->top;
                open_segment(av, current, target, PRM_SEG_BRK, sizeof(prm_segment));
                if (old_top != NULL) {
                    close_segment(av, old_top);
                    av->segments_opened++;
                }
            }
            return 1;
        }
    }
    if (grow_with_mmap(av, nb, pad))
        return 1;
    errno = ENOMEM;
    return 0;
}

/* Give the free space at the top of the main arena's heap back to the kernel by lowering
 * the break, keeping `pad` bytes (plus the minimum top). Only done when the break is
 * exactly the end of our top chunk: if anyone allocated above us, the break is theirs.
 * Returns 1 if memory was released. */
/* Whole pages at the end of top that can go back to the kernel, keeping `pad` bytes and
 * the minimum top. */
static size_t trimmable(prm_arena *av, size_t pad)
{
    size_t size = top_size(av);
    if (pad >= size || size - pad <= PRM_MINSIZE)
        return 0;
    return align_down(size - pad - PRM_MINSIZE, prm_os_page_size());
}

static int trim_heap(prm_arena *av, size_t pad);

int prmi_systrim(prm_arena *av, size_t pad)
{
    /* What is given back is measured from top's size: it must be top's real size. */
    if (av->top != NULL && (uintptr_t)av->top + top_size(av) != av->segments->end)
        prmi_fail_arena(av, "free(): corrupted top size",
                        "the top chunk does not end where the arena's newest segment ends", av->top);
    if (av->top != NULL && av->segments->kind == PRM_SEG_HEAP)
        return trim_heap(av, pad);
    if (av->top == NULL || av->segments->kind != PRM_SEG_BRK)
        return 0;
    size_t size = top_size(av);
    size_t extra = trimmable(av, pad);
    /* A presized heap (preload/presize.c) keeps the profile's footprint. */
    size_t floor = params()->heap_floor;
    if (floor > 0) {
        size_t above = av->system_bytes > floor ? av->system_bytes - floor : 0;
        above = align_down(above, prm_os_page_size());
        extra = extra < above ? extra : above;
    }
    if (extra == 0)
        return 0;

    uintptr_t top_end = (uintptr_t)av->top + size;
    uintptr_t current = prm_os_brk_current();
    if (current != top_end)
        return 0;
    uintptr_t now = prm_os_brk_move(current, top_end - extra);
    if (now >= top_end || now < top_end - extra)
        return 0;
    size_t released = top_end - now;
    set_head(av->top, (size - released) | PRM_PREV_INUSE);
    __atomic_store_n(&av->segments->end, now, __ATOMIC_RELAXED);
    prmi_pagemap_mark(now, top_end, PRM_OWNER_NONE);
    av->system_bytes -= released;
    av->trims++;
    return 1;
}

/* Hand the pages inside free chunks back to the kernel with MADV_DONTNEED (malloc_trim):
 * for every chunk in a bin, the whole pages past its links; for top, the whole pages
 * past `pad`. The memory stays mapped and ours; it reads as zero when touched again.
 * Fast bins must have been consolidated. Returns 1 if anything was discarded. */
int prmi_discard_free_pages(prm_arena *av, size_t pad)
{
    size_t page = prm_os_page_size();
    int released = 0;
    for (unsigned i = PRM_UNSORTED_BIN; i <= PRM_LAST_BIN; i++) {
        prm_chunk *bin = bin_at(av, i);
        size_t steps = 0;
        for (prm_chunk *p = bin->bk; p != bin; p = p->bk) {
            CHECK_LINK(av, p, "a bin link points outside the heap");
            if (prm_unlikely(++steps > list_step_limit(av)))
                prmi_fail_arena(av, "malloc_trim(): corrupted bin", "a bin's list never returns to the bin", p);
            /* The range discarded must be free memory of ours, whatever the header says. */
            prm_segment *seg = prmi_segment_of(av, (uintptr_t)p);
            if (prm_unlikely(seg == NULL || chunk_size(p) > seg->end - (uintptr_t)p))
                prmi_fail_arena(av, "malloc_trim(): invalid chunk size",
                                "a free chunk runs past the end of its segment", p);
            uintptr_t start = align_up((uintptr_t)p + sizeof(prm_chunk), page);
            uintptr_t end = align_down((uintptr_t)p + chunk_size(p), page);
            if (end > start && prm_os_discard((void *)start, end - start) == 0) {
                av->discards++;
                released = 1;
            }
        }
    }
    if (av->top != NULL && (uintptr_t)av->top + top_size(av) != av->segments->end)
        prmi_fail_arena(av, "malloc_trim(): corrupted top size",
                        "the top chunk does not end where the arena's newest segment ends", av->top);
    if (av->top != NULL && pad < top_size(av)) {
        uintptr_t start = align_up((uintptr_t)av->top + sizeof(prm_chunk) + pad, page);
        uintptr_t end = align_down((uintptr_t)av->top + top_size(av), page);
        if (end > start && prm_os_discard((void *)start, end - start) == 0) {
            av->discards++;
            released = 1;
        }
    }
    return released;
}

/* ---- Non-main arenas: heaps ----------------------------------------------------------- */

static size_t arena_header(void)
{
    return align_up(sizeof(prm_segment), PRM_ALIGN) + align_up(sizeof(prm_arena), PRM_ALIGN);
}

/* PRM_HEAP_MAX of address space at a PRM_HEAP_MAX boundary, `commit` bytes of it usable. */
static void *reserve_heap(size_t commit)
{
    void *base = prm_os_reserve_aligned(PRM_HEAP_MAX, PRM_HEAP_MAX);
    if (base == NULL)
        return NULL;
    if (prm_os_commit(base, commit) != 0 ||
        prmi_pagemap_reserve((uintptr_t)base, (uintptr_t)base + PRM_HEAP_MAX) != 0) {
        prm_os_munmap(base, PRM_HEAP_MAX);
        return NULL;
    }
    prm_os_name_mapping(base, PRM_HEAP_MAX, PRM_MAP_NAME_ARENA);
    return base;
}

/* The pad to request above what a heap needs, kept small enough for the heap. */
static size_t heap_pad(void)
{
    size_t pad = params()->top_pad;
    return pad > PRM_HEAP_MAX / 4 ? PRM_HEAP_MAX / 4 : pad;
}

/* A new arena, living at the start of its first heap. Under the arena list lock. */
prm_arena *prmi_new_arena(int index)
{
    size_t page = prm_os_page_size();
    size_t header = arena_header();
    size_t commit = align_up(header + PRM_MINSIZE + heap_pad(), page);
    void *base = reserve_heap(commit);
    if (base == NULL)
        return NULL;
    prm_arena *av = (prm_arena *)((uintptr_t)base + align_up(sizeof(prm_segment), PRM_ALIGN));
    memset(av, 0, sizeof *av);
    prmi_arena_init(av, index);
    av->initialized = 1;
    open_segment(av, (uintptr_t)base, (uintptr_t)base + commit, PRM_SEG_HEAP, header);
    return av;
}

/* Does a request of nb bytes fit a heap at all? Larger ones must be mmapped. */
int prmi_fits_heap(size_t nb)
{
    return nb <= PRM_HEAP_MAX - arena_header() - 2 * PRM_MINSIZE;
}

/* Grow a non-main arena's top by committing more of its heap, or open a new heap. */
static int grow_nonmain(prm_arena *av, size_t nb)
{
    size_t page = prm_os_page_size();
    prm_segment *seg = av->segments;
    size_t top = top_size(av);
    size_t need = nb + PRM_MINSIZE > top ? nb + PRM_MINSIZE - top : 0;
    uintptr_t limit = (uintptr_t)seg + PRM_HEAP_MAX;

    if (seg->end + need <= limit) {
        uintptr_t target = align_up(seg->end + need + heap_pad(), page);
        if (target > limit)
            target = limit;
        if (prm_os_commit((void *)seg->end, target - seg->end) != 0) {
            errno = ENOMEM;
            return 0;
        }
        set_head(av->top, (top + (target - seg->end)) | PRM_PREV_INUSE | PRM_NON_MAIN);
        prmi_pagemap_mark(seg->end, target, prmi_arena_owner(av->index));
        account_system(av, target - seg->end);
        __atomic_store_n(&seg->end, target, __ATOMIC_RELAXED);   /* refresh_range reads it unlocked */
        return 1;
    }
    if (!prmi_fits_heap(nb)) {
        errno = ENOMEM;
        return 0;
    }
    size_t header = align_up(sizeof(prm_segment), PRM_ALIGN);
    size_t commit = align_up(header + nb + 2 * PRM_MINSIZE + heap_pad(), page);
    if (commit > PRM_HEAP_MAX)
        commit = PRM_HEAP_MAX;
    void *base = reserve_heap(commit);
    if (base == NULL) {
        errno = ENOMEM;
        return 0;
    }
    prm_chunk *old_top = av->top;
    open_segment(av, (uintptr_t)base, (uintptr_t)base + commit, PRM_SEG_HEAP, header);
    close_segment(av, old_top);
    av->segments_opened++;
    return 1;
}

/* glibc's heap_trim, reduced: give back the committed pages at the end of the newest heap
 * that top does not need, keeping `pad`. Whole empty heaps are kept (see README). */
static int trim_heap(prm_arena *av, size_t pad)
{
    size_t size = top_size(av);
    size_t extra = trimmable(av, pad);
    if (extra == 0)
        return 0;
    prm_segment *seg = av->segments;
    uintptr_t new_end = seg->end - extra;
    prmi_pagemap_mark(new_end, seg->end, PRM_OWNER_NONE);
    if (prm_os_decommit((void *)new_end, extra) != 0) {
        prmi_pagemap_mark(new_end, seg->end, prmi_arena_owner(av->index));
        return 0;
    }
    set_head(av->top, (size - extra) | PRM_PREV_INUSE | PRM_NON_MAIN);
    __atomic_store_n(&seg->end, new_end, __ATOMIC_RELAXED);
    av->system_bytes -= extra;
    av->trims++;
    return 1;
}
