/* arena.c - arenas and the memory under them: the allocator's global state, arena
 * initialisation, growing the main arena's heap with brk (segments, fence posts, the
 * mmap fallback when brk is refused), and trimming the break back down. */
#include "internal.h"

prm_state prmi_state;

static prm_lock init_lock = PRM_LOCK_INIT;

/* The contended path of prm_lock_acquire: spin briefly (the holder is usually a few
 * hundred instructions from releasing), then sleep on the futex, marking the lock
 * contended (2) so the releasing thread knows to wake somebody. */
PRM_NOINLINE void prmi_lock_slow(prm_lock *lock)
{
    for (int spin = 0; spin < 100; spin++) {
        int expected = 0;
        if (__atomic_load_n(&lock->state, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&lock->state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
        prm_cpu_relax();
    }
    while (__atomic_exchange_n(&lock->state, 2, __ATOMIC_ACQUIRE) != 0)
        prm_os_futex_wait(&lock->state, 2);
}

void prmi_arena_init(prm_arena *av, int index)
{
    av->index = index;
    prmi_bins_init(av);
    av->top = NULL;
    av->segments = NULL;
    av->segment_count = 0;
}

/* First use of the allocator: defaults for the parameters, the main arena's bins and the
 * registry of mmapped chunks. Marked cold: it runs once. */
static PRM_COLD void initialize(void)
{
    prm_lock_acquire(&init_lock);
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE)) {
        prm_params *mp = params();
        mp->max_fast = max_fast_for_request(PRM_DEFAULT_MXFAST);
        mp->trim_threshold = PRM_DEFAULT_TRIM_THRESHOLD;
        mp->top_pad = PRM_DEFAULT_TOP_PAD;
        mp->mmap_threshold = PRM_DEFAULT_MMAP_THRESHOLD;
        mp->n_mmaps_max = PRM_DEFAULT_MMAP_MAX;
        mp->no_dyn_threshold = 0;
        mp->perturb_byte = 0;
        mp->check_action = 3;
        mp->arena_test = 8;
        mp->arena_max = 0;

        prm_mmap_registry *reg = &prmi_state.mmapped;
        reg->list.next = reg->list.prev = &reg->list;

        prmi_arena_init(&prmi_state.main_arena, 0);
        if (prmi_configure != NULL)
            prmi_configure();
        __atomic_store_n(&prmi_state.main_arena.initialized, 1, __ATOMIC_RELEASE);
    }
    prm_lock_release(&init_lock);
}

prm_arena *prmi_main_arena(void)
{
    prm_arena *av = &prmi_state.main_arena;
    if (prm_unlikely(!__atomic_load_n(&av->initialized, __ATOMIC_ACQUIRE)))
        initialize();
    return av;
}

/* The segment holding addr, or NULL. Segments are few (usually one). */
prm_segment *prmi_segment_of(prm_arena *av, uintptr_t addr)
{
    for (prm_segment *seg = av->segments; seg != NULL; seg = seg->older)
        if (addr >= (uintptr_t)seg && addr < seg->end)
            return seg;
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

/* Start a segment in [raw_start, raw_end) and make its space the top chunk. */
static void open_segment(prm_arena *av, uintptr_t raw_start, uintptr_t raw_end, uint32_t kind)
{
    uintptr_t base = align_up(raw_start, PRM_ALIGN);
    prm_segment *seg = (prm_segment *)base;
    seg->older = av->segments;
    seg->raw_start = raw_start;
    seg->end = align_down(raw_end, PRM_ALIGN);
    seg->kind = kind;
    seg->serial = av->segment_count++;
    av->segments = seg;

    prm_chunk *first = segment_first_chunk(seg);
    set_head(first, (seg->end - (uintptr_t)first) | PRM_PREV_INUSE);
    av->top = first;
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
    prm_chunk *old_top = av->top;
    open_segment(av, (uintptr_t)mem, (uintptr_t)mem + want, PRM_SEG_MMAP);
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
int prmi_grow_heap(prm_arena *av, size_t nb)
{
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
        if (prm_os_brk_move(current, target) == target) {
            if (contiguous) {
                size_t added = target - current;
                set_head(av->top, (top_size(av) + added) | PRM_PREV_INUSE);
                av->segments->end = target;
                account_system(av, added);
            } else {
                prm_chunk *old_top = av->top;
                open_segment(av, current, target, PRM_SEG_BRK);
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
int prmi_systrim(prm_arena *av, size_t pad)
{
    if (av->top == NULL || av->segments->kind != PRM_SEG_BRK)
        return 0;
    size_t page = prm_os_page_size();
    size_t size = top_size(av);
    if (pad >= size || size - pad <= PRM_MINSIZE)
        return 0;
    size_t extra = align_down(size - pad - PRM_MINSIZE, page);
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
    av->segments->end = now;
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
        for (prm_chunk *p = bin->bk; p != bin; p = p->bk) {
            CHECK_LINK(av, p, "a bin link points outside the heap");
            uintptr_t start = align_up((uintptr_t)p + sizeof(prm_chunk), page);
            uintptr_t end = align_down((uintptr_t)p + chunk_size(p), page);
            if (end > start && prm_os_discard((void *)start, end - start) == 0) {
                av->discards++;
                released = 1;
            }
        }
    }
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
