/* check.c - heap integrity: the one error-reporting path (a report names the failed
 * check and the pointer; the LD_PRELOAD build writes it and aborts, the cffi build
 * unwinds and lets Python raise), and prm_check, the whole-heap validator. Messages are
 * built without stdio or allocation. */
#include "prm.h"
#include "hardened.h"

#include <string.h>

/* ---- Bounded text ------------------------------------------------------------------------ */

void prmi_text_str(prmi_text *t, const char *s)
{
    if (t->capacity == 0)
        return;
    while (*s != '\0' && t->length + 1 < t->capacity)
        t->buf[t->length++] = *s++;
    t->buf[t->length] = '\0';
}

void prmi_text_hex(prmi_text *t, uintptr_t value)
{
    char digits[2 + 2 * sizeof(uintptr_t) + 1];
    char *d = digits + sizeof digits - 1;
    *d = '\0';
    do {
        *--d = "0123456789abcdef"[value & 15];
        value >>= 4;
    } while (value != 0);
    *--d = 'x';
    *--d = '0';
    prmi_text_str(t, d);
}

void prmi_text_dec(prmi_text *t, uint64_t value)
{
    char digits[24];
    char *d = digits + sizeof digits - 1;
    *d = '\0';
    do {
        *--d = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    prmi_text_str(t, d);
}

/* ---- Reporting ---------------------------------------------------------------------------- */

#if PRM_RECOVERABLE
static __thread prm_error thread_error;

static void record(int status, const char *check, const char *detail, const void *ptr)
{
    prmi_text c = { thread_error.check, sizeof thread_error.check, 0 };
    prmi_text d = { thread_error.detail, sizeof thread_error.detail, 0 };
    thread_error.status = status;
    thread_error.pointer = (uintptr_t)ptr;
    prmi_text_str(&c, check);
    prmi_text_str(&d, detail);
}

int prm_take_error(prm_error *out)
{
    *out = thread_error;
    memset(&thread_error, 0, sizeof thread_error);
    return out->status;
}
#else
int prm_take_error(prm_error *out)
{
    memset(out, 0, sizeof *out);
    return PRM_OK;
}
#endif

/* One line, glibc style: "pymalloc_real: <check>: <detail> (ptr 0x...)", or with the
 * brief bit only the check's name. */
static __attribute__((unused)) void write_report(const char *check, const char *detail,
                                                 const void *ptr, int brief)
{
    char line[320];
    prmi_text t = { line, sizeof line, 0 };
    prmi_text_str(&t, "pymalloc_real: ");
    prmi_text_str(&t, check);
    if (!brief) {
        prmi_text_str(&t, ": ");
        prmi_text_str(&t, detail);
        prmi_text_str(&t, " (ptr ");
        prmi_text_hex(&t, (uintptr_t)ptr);
        prmi_text_str(&t, ")");
    }
    prmi_text_str(&t, "\n");
    prm_os_write_stderr(line, t.length);
}

/* The one place a detected problem is reported. The cffi build records it for Python to
 * raise; the LD_PRELOAD build does what M_CHECK_ACTION says: print (bit 0), abort (bit 1),
 * print briefly (bit 2). Returns when the action lets the program go on. */
static void report(int status, const char *check, const char *detail, const void *ptr)
{
#if PRM_RECOVERABLE
    record(status, check, detail, ptr);
#else
    (void)status;
    int action = __atomic_load_n(&params()->check_action, __ATOMIC_RELAXED);
    if (action & PRM_CHECK_PRINT)
        write_report(check, detail, ptr, action & PRM_CHECK_BRIEF);
    if (action & PRM_CHECK_ABORT)
        prm_os_abort();
#endif
}

/* A fault the allocator can name (faults.c): the line only, from a signal handler; the
 * signal itself then ends the program. Printed as M_CHECK_ACTION says in the LD_PRELOAD
 * build, always in the cffi build (the interpreter dies of the signal too). */
void prmi_report_fault(const char *check, const char *detail, const void *ptr)
{
#if PRM_RECOVERABLE
    write_report(check, detail, ptr, 0);
#else
    int action = __atomic_load_n(&params()->check_action, __ATOMIC_RELAXED);
    if (action & PRM_CHECK_PRINT)
        write_report(check, detail, ptr, action & PRM_CHECK_BRIEF);
#endif
}

void prmi_fail_arena(prm_arena *av, const char *check, const char *detail, const void *ptr)
{
    report(PRM_ERR_CORRUPTION, check, detail, ptr);
    if (!av->corrupt) {
        prmi_text t = { av->failure, sizeof av->failure, 0 };
        prmi_text_str(&t, check);
        prmi_text_str(&t, " at ");
        prmi_text_hex(&t, (uintptr_t)ptr);
        av->corrupt = 1;
    }
    /* Continue mode: unwind to the entry point, which fails the operation. An entry that
     * did not arm the point (the action changed under it) can only abort. */
    if (!av->recover_armed)
        prm_os_abort();
    longjmp(av->recover, 1);
}

int prmi_fail_pointer(const char *check, const char *detail, const void *ptr)
{
    report(PRM_ERR_INVALID_POINTER, check, detail, ptr);
    return PRM_ERR_INVALID_POINTER;
}

int prmi_fail_block(const char *check, const char *detail, const void *ptr)
{
    report(PRM_ERR_CORRUPTION, check, detail, ptr);
    return PRM_ERR_CORRUPTION;
}

void prmi_refuse_corrupt_arena(prm_arena *av)
{
#if PRM_RECOVERABLE
    char detail[sizeof av->failure + 64];
    prmi_text t = { detail, sizeof detail, 0 };
    prmi_text_str(&t, "the arena was found corrupted earlier (");
    prmi_text_str(&t, av->failure);
    prmi_text_str(&t, ") and refuses further use");
    record(PRM_ERR_CORRUPTION, "arena unusable", detail, NULL);
#else
    (void)av;
#endif
}

/* ---- prm_check ------------------------------------------------------------------------------ */

typedef struct check_state {
    prm_arena *av;
    prmi_text *why;
    prm_segment *segment;       /* segment of the previous chunk visited */
    int prev_free;
    size_t prev_size;
    size_t free_chunks, free_bytes;          /* free by their tags, top excluded */
    size_t tagged_used_chunks, tagged_used_bytes;
} check_state;

static int fail_at(prmi_text *why, const char *what, const void *where)
{
    prmi_text_str(why, what);
    prmi_text_str(why, " (chunk ");
    prmi_text_hex(why, (uintptr_t)where);
    prmi_text_str(why, ")");
    return -1;
}

/* With M_CANARY: a block in use (cached ones are retired, not in use) must be intact. */
static int canary_damaged(prmi_text *why, void *mem)
{
    size_t requested, bad = 0;
    if (prmi_canary_inspect(mem, &requested, &bad) != PRMI_CANARY_DAMAGED)
        return 0;
    prmi_text_str(why, "check(): canary overwritten: byte ");
    prmi_text_dec(why, bad);
    prmi_text_str(why, " after a block of ");
    prmi_text_dec(why, requested);
    prmi_text_str(why, " bytes was written");
    fail_at(why, "", mem2chunk(mem));
    return 1;
}

static int check_chunk(void *ctx, prm_segment *seg, prm_chunk *p, size_t size, int kind, int in_use)
{
    check_state *st = ctx;
    size_t arena_bit = st->av->index == 0 ? 0 : PRM_NON_MAIN;

    if (seg != st->segment) {
        st->segment = seg;
        st->prev_free = 0;
        if (!prev_inuse(p))
            return fail_at(st->why, "the first chunk of a segment must have P set", p);
    }
    if (chunk_is_mmapped(p))
        return fail_at(st->why, "a chunk inside a heap segment has the M bit", p);
    if (kind != PRM_KIND_FENCE && (p->size & PRM_NON_MAIN) != arena_bit)
        return fail_at(st->why, "a chunk's A bit does not match its arena", p);
    if (prev_inuse(p) != !st->prev_free)
        return fail_at(st->why, st->prev_free ? "P is set but the chunk below is free"
                                               : "P is clear but the chunk below is in use", p);
    if (st->prev_free && p->prev_size != st->prev_size)
        return fail_at(st->why, "prev_size disagrees with the size of the free chunk below", p);

    if (kind == PRM_KIND_TOP) {
        if (st->prev_free)
            return fail_at(st->why, "a free chunk lies below top (it should have merged)", p);
        if (size < PRM_MINSIZE)
            return fail_at(st->why, "the top chunk is smaller than the minimum chunk", p);
        return 0;
    }
    if (kind == PRM_KIND_FENCE) {
        st->prev_free = 0;
        return 0;
    }
    if (!in_use) {
        if (st->prev_free)
            return fail_at(st->why, "two free chunks are adjacent (they should have merged)", p);
        st->free_chunks++;
        st->free_bytes += size;
    } else {
        st->tagged_used_chunks++;
        st->tagged_used_bytes += size;
        if (params()->canary && canary_damaged(st->why, chunk2mem(p)))
            return -1;
    }
    st->prev_free = !in_use;
    st->prev_size = size;
    return 0;
}

static int check_fast_bins(prm_arena *av, prmi_text *why, size_t limit, size_t *chunks, size_t *bytes)
{
    for (unsigned i = 0; i < PRM_NFASTBINS; i++) {
        size_t steps = 0;
        for (prm_chunk *p = av->fastbins[i]; p != NULL; p = fastbin_next(p)) {
            if (!prmi_plausible_chunk(av, p))
                return fail_at(why, "a fast-bin link points outside the heap", p);
            if (++steps > limit)
                return fail_at(why, "a fast bin loops back on itself (a chunk freed twice?)", p);
            size_t size = chunk_size(p);
            if (size < PRM_MINSIZE || fastbin_index(size) != i)
                return fail_at(why, "a fast-bin chunk's size does not belong to its bin", p);
            if (size > params()->max_fast)
                return fail_at(why, "a fast-bin chunk is larger than max_fast", p);
            prm_chunk *next = chunk_at(p, size);
            if (!prmi_plausible_chunk(av, next) || !prev_inuse(next))
                return fail_at(why, "a fast-bin chunk is not marked in use by the chunk after it", p);
            (*chunks)++;
            *bytes += size;
        }
    }
    return 0;
}

static int check_bin_entry(prm_arena *av, prmi_text *why, unsigned i, prm_chunk *p)
{
    size_t size = chunk_size(p);
    if (size < PRM_MINSIZE || !aligned_ok(size))
        return fail_at(why, "a binned chunk has an impossible size", p);
    if (i != PRM_UNSORTED_BIN && bin_index(size) != i)
        return fail_at(why, "a chunk sits in the wrong bin for its size", p);
    prm_chunk *next = chunk_at(p, size);
    if (!prmi_plausible_chunk(av, next))
        return fail_at(why, "a binned chunk runs past its segment", p);
    if (prev_inuse(next))
        return fail_at(why, "a binned chunk is marked in use", p);
    if (next->prev_size != size)
        return fail_at(why, "a binned chunk's footer disagrees with its size", p);
    return 0;
}

static int check_bins(prm_arena *av, prmi_text *why, size_t limit, size_t *chunks, size_t *bytes)
{
    for (unsigned i = PRM_UNSORTED_BIN; i <= PRM_LAST_BIN; i++) {
        prm_chunk *bin = bin_at(av, i);
        prm_chunk *prev = bin;
        size_t steps = 0;
        size_t last_size = 0;
        for (prm_chunk *p = bin->fd; p != bin; prev = p, p = p->fd) {
            if (!prmi_plausible_chunk(av, p))
                return fail_at(why, "a bin link points outside the heap", p);
            if (++steps > limit)
                return fail_at(why, "a bin's list never returns to the bin", p);
            if (p->bk != prev)
                return fail_at(why, "a binned chunk's bk does not point at its predecessor", p);
            if (check_bin_entry(av, why, i, p) != 0)
                return -1;
            size_t size = chunk_size(p);
            if (i >= PRM_FIRST_LARGE_BIN) {
                if (prev != bin && size > last_size)
                    return fail_at(why, "a large bin is not sorted largest first", p);
                int first_of_size = prev == bin || size != last_size;
                if (first_of_size) {
                    if (p->fd_nextsize == NULL || !prmi_plausible_chunk(av, p->fd_nextsize) ||
                        p->fd_nextsize->bk_nextsize != p)
                        return fail_at(why, "a large chunk's size ring is broken", p);
                } else if (p->fd_nextsize != NULL) {
                    return fail_at(why, "a large chunk that is not first of its size has size links", p);
                }
            }
            last_size = size;
            (*chunks)++;
            *bytes += size;
        }
        if (bin->bk != prev)
            return fail_at(why, "a bin's bk does not point at its last chunk", bin->bk);
        if (i != PRM_UNSORTED_BIN && bin->fd != bin && !bin_marked(av, i))
            return fail_at(why, "a non-empty bin has its binmap bit clear", bin->fd);
    }
    return 0;
}

static int check_mmapped(prmi_text *why)
{
    prm_mmap_registry *reg = &prmi_state.mmapped;
    size_t count = 0, mapped = 0, chunk_bytes = 0;
    for (prm_mmap_header *h = reg->list.next; h != &reg->list; h = h->next) {
        if (++count > reg->count)
            return fail_at(why, "the mmapped-chunk registry holds more entries than it counts", h);
        if (((uintptr_t)h & (prm_os_page_size() - 1)) != 0 || h->next->prev != h || h->prev->next != h)
            return fail_at(why, "an mmapped chunk's registry entry is damaged", h);
        if (!prmi_mmapped_entry_valid(h))
            return fail_at(why, "an mmapped chunk's header disagrees with its mapping", h->chunk);
        /* A mapped block in hardened mode's quarantine has its pages closed: skip it. */
        if (params()->canary && !(params()->hardened && prmi_quarantined_mapped(chunk2mem(h->chunk))) &&
            canary_damaged(why, chunk2mem(h->chunk)))
            return -1;
        mapped += h->length;
        chunk_bytes += chunk_size(h->chunk);
    }
    if (count != reg->count || mapped != reg->mapped_bytes || chunk_bytes != reg->chunk_bytes) {
        prmi_text_str(why, "the mmapped-chunk totals disagree with the chunks registered");
        return -1;
    }
    return 0;
}

static int check_arena(prm_arena *av, prmi_text *why)
{
    if (av->corrupt) {
        prmi_text_str(why, "the arena was marked corrupt: ");
        prmi_text_str(why, av->failure);
        return -1;
    }
    size_t held = 0;
    for (prm_segment *seg = av->segments; seg != NULL; seg = seg->older) {
        if (((uintptr_t)seg & PRM_ALIGN_MASK) != 0 || seg->end <= (uintptr_t)seg || seg->raw_start > (uintptr_t)seg)
            return fail_at(why, "a segment header is damaged", seg);
        held += seg->end - seg->raw_start;
    }
    if (held != av->system_bytes) {
        prmi_text_str(why, "the segments hold ");
        prmi_text_dec(why, held);
        prmi_text_str(why, " bytes but the arena accounts for ");
        prmi_text_dec(why, av->system_bytes);
        return -1;
    }

    check_state st = { .av = av, .why = why };
    if (prmi_walk_heap(av, check_chunk, &st, why) != 0)
        return -1;

    size_t limit = av->system_bytes / PRM_MINSIZE + 1;
    size_t fast_chunks = 0, fast_bytes = 0, binned_chunks = 0, binned_bytes = 0;
    if (check_fast_bins(av, why, limit, &fast_chunks, &fast_bytes) != 0)
        return -1;
    if (check_bins(av, why, limit, &binned_chunks, &binned_bytes) != 0)
        return -1;

    if (binned_chunks != st.free_chunks || binned_bytes != st.free_bytes) {
        prmi_text_str(why, "the bins hold ");
        prmi_text_dec(why, binned_chunks);
        prmi_text_str(why, " chunks but the heap has ");
        prmi_text_dec(why, st.free_chunks);
        prmi_text_str(why, " free chunks");
        return -1;
    }
    if (fast_bytes > st.tagged_used_bytes ||
        st.tagged_used_bytes - fast_bytes != av->in_use_bytes ||
        st.tagged_used_chunks - fast_chunks != av->in_use_chunks) {
        prmi_text_str(why, "in-use accounting says ");
        prmi_text_dec(why, av->in_use_bytes);
        prmi_text_str(why, " bytes but the chunks in use add up to ");
        prmi_text_dec(why, st.tagged_used_bytes - fast_bytes);
        return -1;
    }
    return 0;
}

int prm_check(char *message, size_t capacity)
{
    prmi_text why = { message, capacity, 0 };
    if (capacity > 0)
        message[0] = '\0';

    int rc = 0;
    FOR_EACH_ARENA(av) {
        prm_lock_acquire(&av->lock);
        rc = check_arena(av, &why);
        prm_lock_release(&av->lock);
        if (rc != 0) {
            if (av->index != 0) {
                prmi_text_str(&why, " in arena ");
                prmi_text_dec(&why, (uint64_t)av->index);
            }
            break;
        }
    }
    prm_mmap_registry *reg = &prmi_state.mmapped;
    if (rc == 0 && !reg->broken) {
        prm_lock_acquire(&reg->lock);
        rc = check_mmapped(&why);
        prm_lock_release(&reg->lock);
    }
    return rc == 0 ? PRM_OK : PRM_ERR_CORRUPTION;
}
