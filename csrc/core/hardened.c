/* hardened.c - the checks that keep classic heap-exploitation techniques from working
 * (tests/c/exploits/ is one program per technique: links that must lead to free chunks
 * of ours, the cache's range and ownership checks, the chunk-start map), hardened mode
 * (the quarantine, zero-size blocks) and sized deallocation. Each check is general:
 * links and chunks must lie in our own memory and agree with their neighbours' boundary
 * tags, whatever technique forged them. */
#include "hardened.h"
#include "os.h"
#include "prm.h"

#include <errno.h>
#include <string.h>

int prmi_link_leads_to_free(prm_arena *av, const prm_chunk *p, prm_chunk *q)
{
    uintptr_t a = (uintptr_t)q;
    uintptr_t bins = (uintptr_t)&av->bins[0];
    if (a >= bins && a < (uintptr_t)&av->bins[PRM_NBINS])
        return (a - bins) % sizeof(prm_chunk) == 0;
    if (q == p || !prmi_plausible_link(av, q))
        return 0;
    prm_segment *seg = prmi_segment_of(av, a);   /* plausible_link found it */
    size_t size = chunk_size(q);
    if (size < PRM_MINSIZE || !aligned_ok(size) || size > seg->end - a - PRM_CHUNK_HDR)
        return 0;
    return !inuse_at(q, size);
}

/* ---- The thread cache takes only our own chunks (hardened.h) ------------------------------ */

int prmi_owned_by_an_arena(const void *mem)
{
    uintptr_t chunk = (uintptr_t)mem - PRM_CHUNK_HDR;
    return aligned_ok((uintptr_t)mem) && prmi_owner_is_arena(prmi_owner_of(chunk)) &&
           prmi_owner_is_arena(prmi_owner_of((uintptr_t)mem));
}

/* The cache's range becomes its thread's arena's newest segment as it stands now: read
 * without the lock, so the bounds may be a moment old, which only makes more pointers
 * take the out-of-line path (or, after a trim, lets the fast path read a header in
 * memory we no longer own, where no block of ours can be). */
static void refresh_range(prm_tcache *tc)
{
    prm_arena *av = prmi_self.arena;
    prm_segment *seg = av != NULL ? __atomic_load_n(&av->segments, __ATOMIC_ACQUIRE) : NULL;
    if (seg == NULL)
        return;
    uintptr_t lo = (uintptr_t)chunk2mem(seg->first);
    uintptr_t hi = __atomic_load_n(&seg->end, __ATOMIC_RELAXED);
    tc->range_lo = lo;
    tc->range_granules = hi > lo ? (hi - lo) >> 4 : 0;
    tc->range_arena_bit = av->index != 0 ? PRM_NON_MAIN : 0;
}

int prmi_cache_entry_owned(prm_tcache *tc, const void *mem)
{
    if (!prmi_owned_by_an_arena(mem))
        return 0;
    refresh_range(tc);
    return 1;
}

PRM_NOINLINE int prmi_free_out_of_range(prm_tcache *tc, void *mem)
{
    if (mem == NULL)
        return PRM_OK;
    if (!prmi_cache_entry_owned(tc, mem))
        return prmi_free_to_arena(mem);   /* a mapped chunk, or not ours: it reports */
    return prmi_cache_free_owned(tc, mem);
}

PRM_NOINLINE void *prmi_cache_pop_out_of_range(prm_tcache *tc, size_t bytes)
{
    unsigned index = tcache_index(request2size(bytes));   /* not passed: one register less */
    prm_tcache_entry *e = tc->entries[index];
    if (e == NULL)
        return prmi_malloc_slow(bytes);
    if (!prmi_cache_entry_owned(tc, e))
        return prmi_cache_poisoned(tc, index, bytes);
    tc->entries[index] = tcache_next(e);
    tc->counts[index]--;
    e->key = 0;
    return e;
}

PRM_NOINLINE int prmi_free_cached_head(void *mem)
{
    return prmi_fail_pointer("free(): double free detected in tcache 2",
                             "the chunk already heads its bin in this thread's cache", mem);
}

/* ---- The chunk-start map -----------------------------------------------------------------
 * One bit per 16-byte granule of the address space, set where a chunk an arena handed
 * out starts (cached chunks count as handed out: the arena never sees them). Two levels
 * like the ownership map: a leaf covers 4 GiB (32 MiB of bits, mapped on first use with
 * MAP_NORESERVE, so only the pages of it that mark a heap cost memory: 1/128 of the heap).
 * A leaf the kernel refuses leaves its chunks unmarked: their checks find nothing, never
 * a false alarm. Bits are set and cleared with atomics: two arenas' chunks may share a
 * word where their segments meet.
 *
 * Behind each leaf lies its summary: a bit per word of the leaf, set while the word may
 * hold a start. Checking a chunk scans the words at its two ends and the summary between
 * them, 64 words (64 KiB of heap) per summary word, so a 16 MiB chunk costs 256 loads, not
 * 16,384; a summary bit found set is confirmed against its word before it counts. */
#define START_LEAF_SHIFT 32
#define START_ROOTS ((size_t)1 << (PRM_PAGEMAP_ADDRESS_BITS - START_LEAF_SHIFT))
#define START_LEAF_BYTES (((size_t)1 << (START_LEAF_SHIFT - 4)) / 8)
#define START_LEAF_WORDS (START_LEAF_BYTES / 8)
#define START_MAP_BYTES (START_LEAF_BYTES + START_LEAF_WORDS / 8)   /* the leaf, its summary */
#define START_LEAF_MASK (((uintptr_t)1 << START_LEAF_SHIFT) - 1)

static uint64_t *start_leaves[START_ROOTS];

static uint64_t *start_leaf(uintptr_t addr, int make)
{
    uintptr_t root = addr >> START_LEAF_SHIFT;
    if (root >= START_ROOTS)
        return NULL;
    uint64_t *leaf = __atomic_load_n(&start_leaves[root], __ATOMIC_ACQUIRE);
    if (leaf != NULL || !make)
        return leaf;
    uint64_t *fresh = prm_os_map_metadata(START_MAP_BYTES);
    if (fresh == NULL)
        return NULL;
    if (__atomic_compare_exchange_n(&start_leaves[root], &leaf, fresh, 0, __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
        return fresh;
    prm_os_unmap_metadata(fresh, START_MAP_BYTES);   /* another arena made it first */
    return leaf;
}

/* Is a bit of bits[first .. last] (inclusive bit numbers) set? Each word is read once
 * and the words are ORed; only the two ends are masked. */
static inline int any_bit_in(const uint64_t *bits, size_t first, size_t last)
{
    const uint64_t *word = bits + (first >> 6), *last_word = bits + (last >> 6);
    uint64_t found = __atomic_load_n(word, __ATOMIC_RELAXED) & (~(uint64_t)0 << (first & 63));
    uint64_t last_mask = ~(uint64_t)0 >> (63 - (last & 63));
    if (word == last_word)
        return (found & last_mask) != 0;
    while (++word < last_word)
        found |= __atomic_load_n(word, __ATOMIC_RELAXED);
    return (found | (__atomic_load_n(last_word, __ATOMIC_RELAXED) & last_mask)) != 0;
}

/* Do leaf words first_word .. last_word (inclusive) hold a start? Asked of the summary,
 * each bit it has set confirmed against its word. */
static int any_word_in(const uint64_t *leaf, size_t first_word, size_t last_word)
{
    const uint64_t *summary = leaf + START_LEAF_WORDS;
    uint64_t mask = ~(uint64_t)0 << (first_word & 63);
    for (size_t s = first_word >> 6; s <= last_word >> 6; s++, mask = ~(uint64_t)0) {
        if (s == last_word >> 6)
            mask &= ~(uint64_t)0 >> (63 - (last_word & 63));
        for (uint64_t bits = __atomic_load_n(&summary[s], __ATOMIC_RELAXED) & mask; bits != 0;
             bits &= bits - 1)
            if (__atomic_load_n(&leaf[(s << 6) + (size_t)__builtin_ctzll(bits)], __ATOMIC_RELAXED) != 0)
                return 1;
    }
    return 0;
}

/* Does a marked chunk start in [from, to) (both 16-aligned)? */
static int any_start_in(uintptr_t from, uintptr_t to)
{
    while (from < to) {
        uintptr_t leaf_end = (from | START_LEAF_MASK) + 1;
        uintptr_t end = to < leaf_end || leaf_end == 0 ? to : leaf_end;
        const uint64_t *leaf = start_leaf(from, 0);
        if (leaf != NULL) {
            size_t first = (from & START_LEAF_MASK) >> 4;
            size_t last = ((end - 1) & START_LEAF_MASK) >> 4;   /* inclusive */
            size_t first_word = first >> 6, last_word = last >> 6;
            if (last_word - first_word < 8) {   /* up to 8 KiB: each word, no summary */
                if (any_bit_in(leaf, first, last))
                    return 1;
            } else if (any_bit_in(leaf, first, (first_word << 6) + 63) ||
                       any_bit_in(leaf, last_word << 6, last) ||
                       any_word_in(leaf, first_word + 1, last_word - 1)) {
                return 1;
            }
        }
        from = end;
    }
    return 0;
}

static void mark_start(uintptr_t addr, int set)
{
    uint64_t *leaf = start_leaf(addr, set);
    if (leaf == NULL)
        return;
    size_t granule = (addr & START_LEAF_MASK) >> 4, word = granule >> 6;
    uint64_t bit = (uint64_t)1 << (granule & 63);
    uint64_t *summary = &leaf[START_LEAF_WORDS + (word >> 6)];
    uint64_t summary_bit = (uint64_t)1 << (word & 63);
    if (set) {
        __atomic_fetch_or(&leaf[word], bit, __ATOMIC_RELAXED);
        __atomic_fetch_or(summary, summary_bit, __ATOMIC_RELAXED);
    } else if ((__atomic_fetch_and(&leaf[word], ~bit, __ATOMIC_RELAXED) & ~bit) == 0) {
        /* The word emptied: clear its summary bit, then set it again if another arena
         * marked the word meanwhile (where two segments meet), so no start is hidden. */
        __atomic_fetch_and(summary, ~summary_bit, __ATOMIC_RELAXED);
        if (__atomic_load_n(&leaf[word], __ATOMIC_RELAXED) != 0)
            __atomic_fetch_or(summary, summary_bit, __ATOMIC_RELAXED);
    }
}

/* Is a chunk's start marked at addr: 1, 0, or -1 when its leaf was never mapped (then
 * nothing can be said, and no check may fail on it). */
static int start_marked(uintptr_t addr)
{
    const uint64_t *leaf = start_leaf(addr, 0);
    if (leaf == NULL)
        return -1;
    size_t granule = (addr & START_LEAF_MASK) >> 4;
    return (__atomic_load_n(&leaf[granule >> 6], __ATOMIC_RELAXED) >> (granule & 63)) & 1;
}

/* The chunk before a chunk the cache is given, which its header says is free: the arena
 * would merge the two when it gets the chunk, so its questions are asked now, under its
 * lock (that chunk is the arena's, changing under the lock): it must end here, and be a
 * free chunk of the arena's bins, its links leading to free chunks or bin heads. A fake
 * free chunk built in a live chunk's data (unsafe unlink, house of einherjar) fails.
 * Slow path: taken only when the chunk before is free. */
static PRM_NOINLINE int prev_chunk_sound(void *mem)
{
    prm_chunk *p = mem2chunk(mem);
    prm_arena *av = prmi_arena_of(p);
    const char *check = NULL, *detail = NULL;
    if (prm_unlikely(av->abandoned))
        return PRM_OK;   /* fork child: the arena's owner died mid-update; judge nothing */
    prm_lock_acquire(&av->lock);
    /* The P bit once more under the lock, before prev_size is read: the arena may have
     * handed the chunk before out since, and prev_size is then its owner's data. */
    if (!(load_size(p) & PRM_PREV_INUSE)) {
        size_t prev_size = p->prev_size;
        prm_chunk *q = (prm_chunk *)((uintptr_t)p - prev_size);
        if (prev_size < PRM_MINSIZE || !aligned_ok(prev_size) || prev_size > (uintptr_t)p ||
            !prmi_plausible_link(av, q) || chunk_size(q) != prev_size) {
            check = "corrupted size vs. prev_size while consolidating";
            detail = "the free chunk this one's prev_size leads to does not end here";
        } else if (start_marked((uintptr_t)q) == 1 || !prmi_link_leads_to_free(av, q, q->fd) ||
                   !prmi_link_leads_to_free(av, q, q->bk)) {
            check = "corrupted double-linked list";
            detail = "the chunk before this one, which its header says is free, is no free chunk of its arena's bins";
        }
    }
    prm_lock_release(&av->lock);
    return check == NULL ? PRM_OK : prmi_fail_pointer(check, detail, mem);
}

static PRM_NOINLINE int entry_not_live(void *mem)
{
    return prmi_fail_pointer("free(): double free detected (chunk-start map)",
                             "the chunk is no live chunk's start: it went back to its arena already", mem);
}

static PRM_NOINLINE int entry_over_live(void *mem)
{
    return prmi_fail_pointer("free(): invalid size",
                             "the chunk's size reaches over the start of a live chunk (an overflow into its header?)",
                             mem);
}

/* The general case: the chunk crosses two leaves of the map, or a leaf is missing. */
static PRM_NOINLINE int entry_sound_anywhere(void *mem, size_t size)
{
    uintptr_t a = (uintptr_t)mem2chunk(mem);
    if (start_marked(a) == 0)
        return entry_not_live(mem);
    if (any_start_in(a + PRM_ALIGN, a + size))
        return entry_over_live(mem);
    return load_size(mem2chunk(mem)) & PRM_PREV_INUSE ? PRM_OK : prev_chunk_sound(mem);
}

int prmi_cache_entry_sound(void *mem)
{
    uintptr_t a = (uintptr_t)mem - PRM_CHUNK_HDR;
    size_t head = load_size((prm_chunk *)a), size = head & ~PRM_FLAG_BITS;
    uintptr_t last = a + size - PRM_ALIGN;   /* the chunk's last granule */
    const uint64_t *leaf = a >> PRM_PAGEMAP_ADDRESS_BITS ? NULL
                                                          : __atomic_load_n(&start_leaves[a >> START_LEAF_SHIFT], __ATOMIC_ACQUIRE);
    if (prm_unlikely(leaf == NULL || ((a ^ last) >> START_LEAF_SHIFT) != 0))
        return leaf == NULL ? PRM_OK : entry_sound_anywhere(mem, size);
    /* One leaf: the chunk's own bit, then every word to its last granule (a cached chunk
     * is at most 32 KiB: 32 words). */
    size_t g0 = (a & START_LEAF_MASK) >> 4, g1 = (last & START_LEAF_MASK) >> 4;
    if (prm_unlikely(!((__atomic_load_n(&leaf[g0 >> 6], __ATOMIC_RELAXED) >> (g0 & 63)) & 1)))
        return entry_not_live(mem);
    if (prm_unlikely(any_bit_in(leaf, g0 + 1, g1)))
        return entry_over_live(mem);
    return prm_likely(head & PRM_PREV_INUSE) ? PRM_OK : prev_chunk_sound(mem);
}

void prmi_chunk_claim(prm_arena *av, prm_chunk *p)
{
    uintptr_t a = (uintptr_t)p;
    if (prm_unlikely(any_start_in(a + PRM_ALIGN, a + chunk_size(p))))
        prmi_fail_arena(av, "malloc(): chunk overlaps a live chunk",
                        "the chunk about to be handed out holds the start of a live one (a free chunk's size enlarged?)",
                        p);
    mark_start(a, 1);
}

void prmi_chunk_release(prm_arena *av, prm_chunk *p)
{
    uintptr_t a = (uintptr_t)p;
    if (prm_unlikely(any_start_in(a + PRM_ALIGN, a + chunk_size(p))))
        prmi_fail_arena(av, "free(): invalid size",
                        "the chunk's size reaches over the start of a live chunk (an overflow into its header?)", p);
    mark_start(a, 0);
}

/* ---- Hardened mode ------------------------------------------------------------------------
 * hardened=1 (M_HARDENED) turns on, besides the canary (canary.c, which also keeps the
 * thread caches off, so every free is checked):
 *  - the quarantine: a freed block is not reused at once. It waits in a FIFO (at most
 *    QUARANTINE_SLOTS blocks and QUARANTINE_BYTES of heap blocks); a heap block is filled
 *    with a pattern, which is checked when it leaves (and at exit), so a write after free
 *    is reported with its offset; a mapped block's pages become inaccessible (a read or a
 *    write after free traps) and are given back when it leaves. A second free of a block
 *    in the quarantine finds its retired canary (heap) or its entry (mapped).
 *  - zero-size blocks: malloc(0) returns a distinct address in pages that trap on any
 *    access, which free takes back without a word.
 *  - realloc always moves the block, so the old address goes through the quarantine.
 *  - mapped blocks start on a page boundary (mmapped.c), so their pages can be closed. */
#define QUARANTINE_SLOTS 1024
#define QUARANTINE_BYTES ((size_t)8 << 20)
#define QUARANTINE_MAPPED 64
#define ZERO_REGION ((size_t)1 << 20)

typedef struct quarantined {
    void *mem;
    size_t length;              /* heap: the bytes filled; mapped: the bytes closed */
    int mapped;
} quarantined;

static struct {
    prm_lock lock;
    quarantined slot[QUARANTINE_SLOTS];
    unsigned oldest, count, mapped;
    size_t bytes;
    uintptr_t zero_base;        /* the zero-size blocks' reservation (inaccessible) */
    uintptr_t zero_next;
} quarantine;   /* zero: an unlocked lock (PRM_LOCK_INIT), an empty FIFO */

/* The byte a freed heap block holds at offset i while it waits: varying along the block
 * and never 0, 0xff or text, like the canary's. It repeats every FREED_PERIOD bytes, so
 * the filling and the checking go a period at a time (memcpy, memcmp), not a byte. */
#define FREED_PERIOD 128
static inline unsigned char freed_byte(size_t i)
{
    return (unsigned char)(0x81 | ((i * 0x25) & 0x7e));
}

static const unsigned char *freed_period(void)
{
    static unsigned char period[FREED_PERIOD];
    if (period[0] == 0)   /* racing threads write the same bytes */
        for (size_t i = 0; i < FREED_PERIOD; i++)
            period[i] = freed_byte(i);
    return period;
}

static void fill_freed(unsigned char *bytes, size_t length)
{
    const unsigned char *period = freed_period();
    for (size_t at = 0; at < length; at += FREED_PERIOD)
        memcpy(bytes + at, period, length - at < FREED_PERIOD ? length - at : FREED_PERIOD);
}

static int holds_zero_block(const void *mem)
{
    uintptr_t base = __atomic_load_n(&quarantine.zero_base, __ATOMIC_ACQUIRE);
    return base != 0 && (uintptr_t)mem - base < ZERO_REGION;
}

void *prmi_zero_block(void)
{
    prm_lock_acquire(&quarantine.lock);
    if (quarantine.zero_base == 0) {
        void *region = prm_os_reserve_aligned(ZERO_REGION, prm_os_page_size());
        __atomic_store_n(&quarantine.zero_base, (uintptr_t)region, __ATOMIC_RELEASE);
    }
    uintptr_t base = quarantine.zero_base;
    /* Distinct addresses while fewer than 64 Ki zero-size blocks live; then they repeat. */
    uintptr_t mem = base == 0 ? 0 : base + quarantine.zero_next;
    quarantine.zero_next = (quarantine.zero_next + PRM_ALIGN) % ZERO_REGION;
    prm_lock_release(&quarantine.lock);
    if (mem == 0)
        errno = ENOMEM;
    return (void *)mem;
}

int prmi_zero_block_at(uintptr_t address, uintptr_t *block)
{
    if (!holds_zero_block((const void *)address))
        return 0;
    *block = address & ~(uintptr_t)PRM_ALIGN_MASK;
    return 1;
}

int prmi_quarantined_mapped_at(uintptr_t address, uintptr_t *mem, size_t *length)
{
    /* No lock (a signal handler asks): the window is read as it stands; an entry that
     * changes meanwhile at worst goes unnamed. A block's closed pages and the guard page
     * after them count as the block's. */
    size_t page = prm_os_page_size();
    unsigned oldest = __atomic_load_n(&quarantine.oldest, __ATOMIC_RELAXED);
    unsigned count = __atomic_load_n(&quarantine.count, __ATOMIC_RELAXED);
    for (unsigned k = 0; k < count && k < QUARANTINE_SLOTS; k++) {
        const quarantined *q = &quarantine.slot[(oldest + k) % QUARANTINE_SLOTS];
        uintptr_t start = (uintptr_t)q->mem;
        if (q->mapped && q->length > 0 && address >= start && address - start < q->length + page) {
            *mem = start;
            *length = q->length;
            return 1;
        }
    }
    return 0;
}

/* Under the quarantine's lock: the entry for mapped block mem, or -1. */
static int mapped_slot_of(const void *mem)
{
    if (quarantine.mapped == 0)
        return -1;
    for (unsigned k = 0; k < quarantine.count; k++) {
        unsigned i = (quarantine.oldest + k) % QUARANTINE_SLOTS;
        if (quarantine.slot[i].mapped && quarantine.slot[i].mem == mem)
            return (int)i;
    }
    return -1;
}

int prmi_quarantined_mapped(const void *mem)
{
    prm_lock_acquire(&quarantine.lock);
    int found = mapped_slot_of(mem) >= 0;
    prm_lock_release(&quarantine.lock);
    return found;
}

/* A heap block leaving the quarantine (or looked at, at exit): still all pattern? */
static int verify_freed(const quarantined *q)
{
    const unsigned char *bytes = q->mem;
    const unsigned char *period = freed_period();
    size_t i = 0;
    while (i < q->length) {   /* whole periods that match, then the byte that does not */
        size_t n = q->length - i < FREED_PERIOD ? q->length - i : FREED_PERIOD;
        if (memcmp(bytes + i, period, n) == 0) {
            i += n;
            continue;
        }
        while (bytes[i] == freed_byte(i))
            i++;
        char detail[96];
        prmi_text t = { detail, sizeof detail, 0 };
        prmi_text_str(&t, "byte ");
        prmi_text_dec(&t, i);
        prmi_text_str(&t, " of the block was written after it was freed");
        return prmi_fail_block("free(): write after free detected", detail, q->mem);
    }
    return PRM_OK;
}

/* A block leaves the quarantine: checked, then freed for real. Without the lock. */
static int release(quarantined q)
{
    if (!q.mapped && verify_freed(&q) != PRM_OK)
        return PRM_ERR_CORRUPTION;   /* reported; the block stays out of use */
    return prmi_free_released(q.mem);
}

int prmi_quarantine_free(void *mem)
{
    int saved_errno = errno;
    int status = PRM_OK;
    if (mem == NULL || holds_zero_block(mem))
        goto done;
    if (prmi_quarantined_mapped(mem)) {
        status = prmi_fail_pointer("free(): double free detected (quarantine)",
                                   "the block is already freed and waits in the quarantine", mem);
        goto done;
    }
    if ((status = prmi_canary_release(mem)) != PRM_OK)
        goto done;
    /* A heap block is filled up to the canary's last word, which now holds the retired
     * marker (canary.c) that names a second free. */
    prm_chunk *chunk = mem2chunk(mem);
    quarantined q = { mem, chunk_size(chunk) - 2 * PRM_SIZE_SZ, chunk_is_mmapped(chunk) };
    if (q.mapped) {
        /* Close the block's pages: from mem (page aligned in hardened mode) to the end. */
        prm_chunk *p = mem2chunk(mem);
        uintptr_t start = align_up((uintptr_t)mem, prm_os_page_size());
        uintptr_t end = (uintptr_t)p + chunk_size(p);
        q.length = end > start ? end - start : 0;
        if (q.length > 0 && prm_os_decommit((void *)start, q.length) != 0)
            q.length = 0;
    } else {
        fill_freed(mem, q.length);
    }
    quarantined leaving[2];
    unsigned n_leaving = 0;
    prm_lock_acquire(&quarantine.lock);
    /* Make room: at most one block for the slot, and the oldest heap blocks past the
     * byte budget or mapped ones past theirs (two at most per free: the rest next time). */
    while (n_leaving < 2 && quarantine.count > 0 &&
           (quarantine.count == QUARANTINE_SLOTS || quarantine.bytes > QUARANTINE_BYTES ||
            quarantine.mapped >= QUARANTINE_MAPPED)) {
        quarantined old = quarantine.slot[quarantine.oldest];
        quarantine.oldest = (quarantine.oldest + 1) % QUARANTINE_SLOTS;
        quarantine.count--;
        if (old.mapped)
            quarantine.mapped--;
        else
            quarantine.bytes -= old.length;
        leaving[n_leaving++] = old;
    }
    quarantine.slot[(quarantine.oldest + quarantine.count) % QUARANTINE_SLOTS] = q;
    quarantine.count++;
    if (q.mapped)
        quarantine.mapped++;
    else
        quarantine.bytes += q.length;
    prm_lock_release(&quarantine.lock);
    for (unsigned i = 0; i < n_leaving; i++) {
        int left = release(leaving[i]);
        if (status == PRM_OK)
            status = left;
    }
done:
    errno = saved_errno;
    return status;
}

prm_lock *prmi_quarantine_lock(void)
{
    return &quarantine.lock;
}

void prmi_quarantine_check_all(void)
{
    prm_lock_acquire(&quarantine.lock);
    for (unsigned k = 0; k < quarantine.count; k++) {
        quarantined *q = &quarantine.slot[(quarantine.oldest + k) % QUARANTINE_SLOTS];
        if (!q->mapped && verify_freed(q) != PRM_OK)
            q->length = 0;   /* reported once */
    }
    prm_lock_release(&quarantine.lock);
}

int prmi_hardened_usable(void *mem, const char *who)
{
    if (holds_zero_block(mem))
        return 0;
    if (prmi_quarantined_mapped(mem)) {
        prmi_fail_pointer(who, "the block is freed and waits in the quarantine", mem);
        return 0;
    }
    return 1;
}

void *prmi_hardened_realloc(void *oldmem, size_t bytes)
{
    size_t old_size = 0;
    if (!holds_zero_block(oldmem)) {
        if (prmi_quarantined_mapped(oldmem)) {
            prmi_fail_pointer("realloc(): invalid pointer", "the block is freed and waits in the quarantine",
                              oldmem);
            errno = EINVAL;
            return NULL;
        }
        /* The block and its canary are checked, and named as realloc's. */
        if (!prmi_usable_size_checked(oldmem, "realloc(): invalid pointer", "realloc(): canary overwritten",
                                      &old_size)) {
            errno = EINVAL;
            return NULL;
        }
    }
    void *mem = prm_malloc(bytes);
    if (mem == NULL)
        return NULL;
    memcpy(mem, oldmem, old_size < bytes ? old_size : bytes);
    prm_free(oldmem);
    return mem;
}

/* ---- Sized deallocation ------------------------------------------------------------------- */

/* Does `size` name the block at mem? With the canary (hardened mode) it must be the size
 * asked for; without, the block must hold it and not be much larger than it needs
 * (malloc rounds a request up by at most 12.5% plus a chunk's alignment, or to pages). */
static int size_matches(void *mem, size_t size)
{
    if (params()->canary)
        return prm_usable_size(mem) == size || (holds_zero_block(mem) && size == 0);
    size_t usable = prm_usable_size(mem);
    if (usable == 0 || size > usable)
        return 0;
    size_t slack = usable / 8 + 2 * PRM_ALIGN;
    if (chunk_is_mmapped(mem2chunk(mem)))
        slack += prm_os_page_size() + sizeof(prm_mmap_header);
    return usable - size <= slack;
}

int prmi_sized_free_check(void *mem, size_t alignment, size_t size)
{
    if (mem == NULL || !PRM_HARDENING)
        return PRM_OK;
    if (alignment != 0 && ((uintptr_t)mem & (alignment - 1)) != 0)
        return prmi_fail_pointer("free_sized(): size mismatch",
                                 "the block is not aligned as the alignment given says", mem);
    if (size == (size_t)-1 || size_matches(mem, size))   /* -1: no size to check */
        return PRM_OK;
    if (prm_usable_size(mem) == 0 && !holds_zero_block(mem))
        return PRM_ERR_INVALID_POINTER;   /* reported by the look-up */
    return prmi_fail_pointer("free_sized(): size mismatch",
                             "the size given is not the block's (a sized delete of the wrong type?)", mem);
}

int prm_free_sized(void *mem, size_t size)
{
    int status = prmi_sized_free_check(mem, 0, size);
    return status == PRM_OK ? prm_free(mem) : status;
}

int prm_free_aligned_sized(void *mem, size_t alignment, size_t size)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        alignment = 1;   /* C23: undefined; we check the size alone */
    int status = prmi_sized_free_check(mem, alignment, size);
    return status == PRM_OK ? prm_free(mem) : status;
}

void prmi_hardened_forget(void)
{
    for (size_t root = 0; root < START_ROOTS; root++) {
        uint64_t *leaf = __atomic_exchange_n(&start_leaves[root], NULL, __ATOMIC_ACQ_REL);
        if (leaf != NULL)
            prm_os_unmap_metadata(leaf, START_MAP_BYTES);
    }
    prm_lock_acquire(&quarantine.lock);
    quarantine.oldest = quarantine.count = quarantine.mapped = 0;
    quarantine.bytes = 0;
    prm_lock_release(&quarantine.lock);
}
