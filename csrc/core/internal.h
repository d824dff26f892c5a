/* internal.h - the allocator's own structures (arena, segment, mmapped-chunk registry,
 * tunable parameters) and the functions the core's files share with each other.
 * Names: prm_ is public (prm.h), prmi_ is internal across files, prm_os_ the kernel. */
#ifndef PRM_INTERNAL_H
#define PRM_INTERNAL_H

#include <setjmp.h>

#include "chunk.h"
#include "glue.h"
#include "pagemap.h"

/* The cffi build sets PRM_RECOVERABLE=1: detected heap corruption then unwinds to the
 * public entry point (longjmp), marks the arena unusable and reports an error that
 * Python raises as an exception. The LD_PRELOAD build reports and aborts. */
#ifndef PRM_RECOVERABLE
#define PRM_RECOVERABLE 0
#endif

/* With PRM_CHECK_LINKS every bin link is checked to point into the arena's own memory
 * before it is followed, so a corrupted link is reported instead of dereferenced. The
 * cffi build must never let corruption crash the interpreter, so it turns this on. */
#ifndef PRM_CHECK_LINKS
#define PRM_CHECK_LINKS PRM_RECOVERABLE
#endif

/* ---- Segments ----------------------------------------------------------------------
 * A segment is one contiguous run of memory an arena carves chunks from. The main
 * arena gets segments from brk; when the break does not continue our last segment
 * (the interpreter's own malloc moved it) or brk is refused, a new segment starts.
 *
 *   raw_start  base (16-aligned)                                            end
 *   |  ...  | prm_segment | chunk (P=1) | chunk | ... | top chunk           |   current
 *   |  ...  | prm_segment | chunk (P=1) | chunk | ... | chunk | fence posts |   closed
 *
 * A closed segment ends in fence posts: 16-byte chunk headers marked in use, so a
 * chunk below them never coalesces past the end. Walks stop at `end`.
 *
 * A non-main arena's segments are *heaps*, as in glibc: PRM_HEAP_MAX bytes of address
 * space reserved at a PRM_HEAP_MAX-aligned address, committed (made read/write) from
 * the bottom as top grows and decommitted as it shrinks. The alignment is how free
 * finds a chunk's arena: the segment header sits at the chunk's address rounded down
 * to PRM_HEAP_MAX. The first heap of an arena holds the arena itself after the header.
 *
 *   heap (aligned) -> | prm_segment | [prm_arena] | chunks ... | top | uncommitted ... | */
enum prm_segment_kind { PRM_SEG_BRK = 0, PRM_SEG_MMAP = 1, PRM_SEG_HEAP = 2 };

/* What /proc/PID/maps calls our anonymous mappings ("[anon:...]") where the kernel names
 * mappings (prm_os_name_mapping). The brk heap keeps the kernel's own "[heap]": the
 * kernel prints that before it looks for a name. */
#define PRM_MAP_NAME_HEAP      "pymalloc_real heap"       /* mmap-fallback segments */
#define PRM_MAP_NAME_ARENA     "pymalloc_real arena heap" /* non-main arenas' heaps */
#define PRM_MAP_NAME_MMAPPED   "pymalloc_real mmapped"    /* chunks with their own mapping */

#define PRM_HEAP_MAX ((size_t)64 * 1024 * 1024)   /* glibc: 2 x the largest mmap threshold */

struct prm_arena;

typedef struct prm_segment {
    struct prm_segment *older;  /* previous segment of this arena, NULL for the first */
    uintptr_t raw_start;        /* first byte obtained from the OS (may precede base) */
    uintptr_t end;              /* one past the last byte we own (committed, for heaps) */
    struct prm_arena *arena;    /* the owner */
    struct prm_chunk *first;    /* the first chunk */
    uint32_t kind;              /* enum prm_segment_kind */
    uint32_t serial;            /* creation order within the arena, from 0 */
} prm_segment;

static inline prm_chunk *segment_first_chunk(prm_segment *seg) { return seg->first; }

/* ---- Arenas ------------------------------------------------------------------------- */
#define PRM_BINMAP_WORDS 2

typedef struct prm_arena {
    prm_lock lock;
    int index;                  /* 0 is the main arena */
    int initialized;
    int corrupt;                /* set once corruption was detected: the arena refuses work */
    int have_fastchunks;
    int abandoned;              /* a fork child found it mid-update: never used again */
    int attached_threads;       /* threads using it (under the arena list lock) */
    int fork_level;             /* threads.c: depth of the fork whose prepare took the lock */
    struct prm_arena *next;     /* the list of all arenas, main first; never shrinks */

    /* Frees from threads that do not use this arena (LD_PRELOAD build): pushed without
     * the lock onto this lock-free stack, and freed for real by whoever next holds the
     * lock (remote.c). Atomics only; the padding keeps the pushers' cache
     * line apart from the lock and the bins the owner works on. */
    char remote_pad_before_[64];
    struct prm_remote_entry *remote_head;
    char remote_pad_after_[64 - sizeof(void *)];
    uint64_t remote_frees;      /* chunks drained from the stack (under the lock) */

    prm_chunk *fastbins[PRM_NFASTBINS];
    prm_chunk *top;
    prm_chunk *last_remainder;
    uint64_t binmap[PRM_BINMAP_WORDS];
    prm_chunk bins[PRM_NBINS];  /* list heads; only fd and bk are used */
    prm_segment *segments;      /* newest first; the newest holds top */
    prm_segment *segment_hint;  /* where prmi_segment_of last found an address (segments
                                 * are never taken away, so it stays one of them) */
    uint32_t segment_count;

    /* Accounting, all under the lock. */
    size_t system_bytes;        /* bytes of the OS's memory the segments hold now */
    size_t max_system_bytes;
    size_t in_use_bytes;        /* sum of the sizes of chunks handed out, not freed */
    size_t in_use_chunks;
    uint64_t trims;             /* times the break was lowered */
    uint64_t consolidations;    /* fast-bin consolidations */
    uint64_t segments_opened;   /* segments started because the break was not ours */
    uint64_t discards;          /* madvise(MADV_DONTNEED) calls of malloc_trim */
    /* Trim hysteresis (LD_PRELOAD build, arena.c): when the heap regrows soon after free
     * trimmed it, later automatic trims keep trim_hold bytes more above top_pad. */
    size_t trim_hold;
    size_t last_trim_bytes;     /* what the last automatic trim gave back */
    uint64_t last_trim_ns;      /* when (monotonic), 0 once the heap grew again */

    /* Armed by public entries while they hold the lock: always in the cffi build, and in
     * the LD_PRELOAD build when M_CHECK_ACTION says continue (no abort bit). */
    jmp_buf recover;
    int recover_armed;
    char failure[160];          /* the first corruption report against this arena */
} prm_arena;

static inline prm_chunk *bin_at(prm_arena *av, unsigned index) { return &av->bins[index]; }
static inline prm_chunk *unsorted_bin(prm_arena *av) { return &av->bins[PRM_UNSORTED_BIN]; }
static inline size_t top_size(prm_arena *av) { return chunk_size(av->top); }

static inline void mark_bin(prm_arena *av, unsigned i) { av->binmap[i >> 6] |= (uint64_t)1 << (i & 63); }
static inline void unmark_bin(prm_arena *av, unsigned i) { av->binmap[i >> 6] &= ~((uint64_t)1 << (i & 63)); }
static inline int  bin_marked(prm_arena *av, unsigned i) { return (int)((av->binmap[i >> 6] >> (i & 63)) & 1); }

/* A link about to be followed: fine, or the arena is reported corrupt (no return). The
 * default build checks too (issue 16): a bin link that leads out of our segments is how
 * house of lore, the large-bin attack and the stashing attacks reach the stack. */
#define CHECK_LINK(av, q, what)                                                          \
    do {                                                                                \
        if ((PRM_CHECK_LINKS || PRM_HARDENING) && prm_unlikely(!prmi_plausible_link((av), (q))))            \
            prmi_fail_arena((av), "corrupted link", what, (q));                          \
    } while (0)

/* More steps along one of av's lists than it can have chunks: the list is a cycle. */
static inline size_t list_step_limit(const prm_arena *av) { return av->system_bytes / 32 + 2; }

/* A chunk header about to be read (found through a size or prev_size): fine, or the
 * arena is reported corrupt. Both builds, like CHECK_LINK. */
#define CHECK_CHUNK(av, q, what)                                                         \
    do {                                                                                \
        if ((PRM_CHECK_LINKS || PRM_HARDENING) && prm_unlikely(!prmi_plausible_chunk((av), (q))))           \
            prmi_fail_arena((av), "corrupted size", what, (q));                          \
    } while (0)

/* ---- Chunks with their own mapping ---------------------------------------------------
 * Each mmapped chunk's mapping starts with this header, so the core can list, check and
 * account every mmapped chunk (glibc keeps no such list). The chunk follows at offset
 * prev_size (>= sizeof header, larger after memalign), and the header points back at it.
 *
 *   mapping -> | prm_mmap_header | ... | chunk: prev_size = offset, size | M | user data |
 */
typedef struct prm_mmap_header {
    struct prm_mmap_header *next;
    struct prm_mmap_header *prev;
    size_t length;              /* length of the whole mapping */
    prm_chunk *chunk;           /* the chunk inside: the identity check on free */
} prm_mmap_header;

#define PRM_UNMAPPED_REMEMBERED 64

typedef struct prm_mmap_registry {
    prm_lock lock;
    int broken;                 /* a fork child found the list mid-update: not maintained */
    prm_mmap_header list;       /* circular, list is the head */
    size_t count, max_count;
    size_t mapped_bytes, max_mapped_bytes;   /* lengths of the mappings */
    size_t chunk_bytes;         /* sizes of the chunks in them (in-use accounting) */
    /* The last chunks unmapped (by free or a moving mremap), and the pages their
     * headers were on when free left a tombstone there (mmapped.c), oldest first. */
    uintptr_t unmapped[PRM_UNMAPPED_REMEMBERED];
    uintptr_t tombstones[PRM_UNMAPPED_REMEMBERED];
    unsigned unmapped_next;
} prm_mmap_registry;

enum prmi_mapped { PRMI_MAPPED_LIVE, PRMI_MAPPED_GONE, PRMI_MAPPED_UNKNOWN };

/* ---- Tunable parameters (mallopt) ------------------------------------------------------ */
#define PRM_DEFAULT_MMAP_THRESHOLD      ((size_t)128 * 1024)
#define PRM_DEFAULT_MMAP_THRESHOLD_MAX  ((size_t)32 * 1024 * 1024)   /* 64-bit glibc */
#define PRM_DEFAULT_TRIM_THRESHOLD      ((size_t)128 * 1024)
#define PRM_DEFAULT_TOP_PAD             ((size_t)128 * 1024)
/* Trim hysteresis: a regrowth within PRM_TRIM_REGROW_NS of an automatic trim doubles what
 * the arena's later trims keep (at least what that trim, or burst of trims, gave back:
 * keeping only that lags behind a program whose swings grow), up to
 * PRM_TRIM_HOLD_MAX; a trim a second after the last one with no regrowth between
 * halves it. Only in the
 * LD_PRELOAD build: the Python build trims exactly as glibc does, as its tests and the
 * demo show the break moving. */
#define PRM_TRIM_HYSTERESIS             (!PRM_RECOVERABLE)
#define PRM_TRIM_REGROW_NS              ((uint64_t)50 * 1000 * 1000)
#define PRM_TRIM_DECAY_NS               ((uint64_t)1000 * 1000 * 1000)
#define PRM_TRIM_HOLD_MAX               ((size_t)32 << 20)
#define PRM_DEFAULT_MMAP_MAX            65536
#define PRM_CONSOLIDATION_THRESHOLD     ((size_t)64 * 1024)
#define PRM_MMAP_SEGMENT_MIN            ((size_t)1024 * 1024)       /* brk refused: mmap this much */

/* M_CHECK_ACTION bits, with the meanings glibc documents for mallopt and MALLOC_CHECK_.
 * The LD_PRELOAD build obeys them; the cffi build always raises in Python instead. */
#define PRM_CHECK_PRINT  1      /* write the one-line report to stderr */
#define PRM_CHECK_ABORT  2      /* then abort(); without it the operation fails and the
                                   program goes on (a corrupt arena refuses further use) */
#define PRM_CHECK_BRIEF  4      /* with PRINT: the check's name only, no detail */
#define PRM_DEFAULT_CHECK_ACTION (PRM_CHECK_PRINT | PRM_CHECK_ABORT)

/* The canary (off by default, M_CANARY): each block is allocated PRM_CANARY_EXTRA bytes
 * larger; the bytes from the requested size up to the last word hold a pattern, and the
 * last word holds the requested size, both keyed by the block's address. See canary.c. */
#define PRM_CANARY_EXTRA ((size_t)16)

typedef struct prm_params {
    size_t max_fast;            /* largest fast-bin chunk size */
    size_t trim_threshold;
    size_t top_pad;
    size_t mmap_threshold;
    int n_mmaps_max;
    int no_dyn_threshold;       /* set once the user fixed a threshold with mallopt */
    int perturb_byte;
    int check_action;           /* PRM_CHECK_* bits */
    int canary;                 /* 1: blocks carry a canary after the requested size */
    int hardened;               /* 1: hardened mode (hardened.c; the canary is on with it) */
    int debug;                  /* perturb_byte or canary is set: the fast paths step aside */
    size_t arena_test;
    size_t arena_max;           /* 0: 8 x the CPUs, as glibc on 64-bit */
    int tcache_count;           /* chunks per thread-cache bin; 0 disables the caches */
    int tcache_grow;            /* 1: bins that overflow raise their limits (tcache.c) */
    size_t heap_floor;          /* presize (preload/presize.c): the main heap is never
                                   trimmed below this many bytes from the OS; 0: no floor */
} prm_params;


typedef struct prm_state {
    prm_params params;
    prm_arena main_arena;       /* heads the arena list */
    prm_mmap_registry mmapped;
    prm_lock list_lock;         /* the arena list and the attachment counts */
    int arena_count;
    int arena_limit;            /* arena_max in force */
    prm_arena *next_to_reuse;   /* round robin once the limit is reached */
    /* The thread caches' slow events, summed over threads (relaxed atomics): limits
     * raised, batches given back to an arena, batches taken from one (tcache.c). */
    uint64_t tcache_raises, tcache_drains, tcache_fills;
    size_t pagemap_leaves;      /* leaves the ownership map has mapped (pagemap.c) */
} prm_state;

PRM_INTERNAL extern prm_state prmi_state;

static inline prm_params *params(void) { return &prmi_state.params; }

/* ---- Shared internal functions ---------------------------------------------------------- */

/* ---- Threads and their caches (threads.c) --------------------------------------------
 * Each thread has a small state block in TLS (initial-exec in the preload library): its
 * arena and its cache. The per-thread cache (tcache) keeps free chunks in singly linked
 * lists that need no lock, so malloc and free of those sizes usually never touch an
 * arena. The cache itself is a chunk of the thread's arena, given back with its
 * contents when the thread exits.
 *
 * Two kinds of bins:
 *   - small bins, glibc's: one per chunk size from 32 to 1040 bytes; the inline fast
 *     paths of malloc and free serve them.
 *   - large bins (ours): one per size class of requests from 1 KiB to 32 KiB, eight
 *     classes per doubling (1152, 1280, ..., 2048, 2304, ..., 32768 bytes), served out of
 *     line. malloc rounds a request in that range up to its class (at most 12.5% more)
 *     so that a chunk freed at one size serves later requests of nearby sizes; free
 *     files a chunk under the largest class it can serve. A large bin holds at most
 *     PRM_TCACHE_LARGE_BIN_BYTES, and all of a thread's large bins together at most
 *     PRM_TCACHE_LARGE_BUDGET bytes (counted as chunks come and go).
 *
 * Each bin has its own limit (tcache.c). It starts at tcache_count, glibc's fixed count;
 * with tcache_grow on (the default) a bin that overflows, and ran dry since it last
 * grew (the program allocates that size as well as freeing it), doubles its limit, up to
 * PRM_TCACHE_GROWTH x tcache_count and its byte cap, while the small bins' limits
 * together stay within PRM_TCACHE_SMALL_BUDGET bytes. A bin at its cap that overflows
 * gives half its chunks back to the arena in one lock hold (a batch), and a miss in a
 * bin whose limit has grown takes a quarter of the limit from the arena in one lock
 * hold. So a program that frees and allocates one size in bursts finds the cache deep
 * enough, and one that does not keeps glibc's small cache. */
#define PRM_TCACHE_SMALL_BINS    64
#define PRM_TCACHE_MAX_SIZE      (PRM_MINSIZE + (PRM_TCACHE_SMALL_BINS - 1) * PRM_ALIGN)   /* 1040 */
#define PRM_TCACHE_LARGE_CLASSES 40
#define PRM_TCACHE_BINS          (PRM_TCACHE_SMALL_BINS + PRM_TCACHE_LARGE_CLASSES)
#define PRM_TCACHE_MAX_REQUEST   (PRM_TCACHE_MAX_SIZE - PRM_SIZE_SZ)   /* request2size: 1040 */
#define PRM_TCACHE_LARGE_MAX_REQUEST ((size_t)32768)
#define PRM_TCACHE_LARGE_MAX_SIZE    (PRM_TCACHE_LARGE_MAX_REQUEST + 2 * PRM_SIZE_SZ)   /* 32784 */
#define PRM_TCACHE_LARGE_BIN_BYTES   ((size_t)64 << 10)
#define PRM_TCACHE_LARGE_BUDGET      ((size_t)1 << 20)
#define PRM_TCACHE_SMALL_BIN_BYTES   ((size_t)16 << 10)
#define PRM_TCACHE_SMALL_BUDGET      ((size_t)512 << 10)
#define PRM_TCACHE_GROWTH        8
#define PRM_TCACHE_BATCH_MAX     32
#define PRM_DEFAULT_TCACHE_COUNT 7

typedef struct prm_tcache_entry {
    struct prm_tcache_entry *next;
    uintptr_t key;              /* while cached: the owning cache (a double-free check) */
} prm_tcache_entry;

typedef struct prm_tcache {
    uint16_t counts[PRM_TCACHE_BINS];
    uint16_t limits[PRM_TCACHE_BINS];   /* how many each bin may hold now */
    uint64_t missed[(PRM_TCACHE_BINS + 63) / 64];   /* bins that ran dry since they last grew */
    prm_tcache_entry *entries[PRM_TCACHE_BINS];
    size_t large_bytes;         /* chunk bytes held in the large bins */
    size_t small_limit_bytes;   /* sum over the small bins of limit x chunk size */
    int base_count;             /* the tcache_count the limits were set from */
    /* The memory the fast paths take as ours without asking the ownership map (hardened.h,
     * cache_range_holds): block addresses from range_lo, range_granules 16-byte granules
     * long, the newest segment of this thread's arena when it was last looked at. */
    uintptr_t range_lo;
    uintptr_t range_granules;
    /* The NON_MAIN bit every chunk in that range has (0 in the main arena's): a chunk
     * freed there with the other value had its header forged (house of mind). */
    size_t range_arena_bit;
} prm_tcache;

/* The cache pointer says more than "none": the thread exited, or caches are off. */
#define PRM_TCACHE_NONE      ((prm_tcache *)0)
#define PRM_TCACHE_DISABLED  ((prm_tcache *)1)

typedef struct prm_thread {
    prm_arena *arena;
    prm_tcache *tcache;
    unsigned remote_pushes;     /* frees pushed to other arenas since this thread last drained one */
} prm_thread;

PRM_INTERNAL extern __thread prm_thread prmi_self;

static inline unsigned tcache_index(size_t nb) { return (unsigned)((nb - PRM_MINSIZE) >> 4); }
/* tcache_index(request2size(bytes)) for a request of at most PRM_TCACHE_MAX_REQUEST bytes,
 * without request2size's clamp to PRM_MINSIZE (a compare and a conditional move on
 * malloc's fast path): requests of up to 8 bytes and of 9 to 24 both land in bin 0.
 * tests/c/core_test.c checks it against the definition for every such request. */
static inline unsigned request_tcache_index(size_t bytes)
{
    _Static_assert(PRM_SIZE_SZ == 8 && PRM_ALIGN == 16 && PRM_MINSIZE == 32, "the formula's constants");
    size_t bin_plus_one = (bytes + 7) >> 4;   /* 0 for requests of up to 8 bytes */
    return (unsigned)(bin_plus_one - (bin_plus_one != 0));
}

/* The cache lists are safe-linked like the fast bins (chunk.h). A cached entry's key is
 * its cache: free's double-free test. Popping an entry checks the link it leaves as the
 * new head (tcache_link_sane): a write over a cached chunk's link with anything but a
 * pointer decodes to a non-canonical address and is caught for certain, and a pointer
 * written there decodes misaligned 15 times in 16. */
static inline prm_tcache_entry *tcache_next(prm_tcache_entry *e) { return reveal_link(&e->next, e->next); }
static inline void tcache_link(prm_tcache *tc, prm_tcache_entry *e, prm_tcache_entry *next)
{
    e->next = protect_link(&e->next, next);
    e->key = (uintptr_t)tc;
}
static inline int tcache_sealed(prm_tcache *tc, prm_tcache_entry *e) { return e->key == (uintptr_t)tc; }
/* A decoded link may become a cache bin's head: NULL, or 16-aligned in user space. */
static inline int tcache_link_sane(const prm_tcache_entry *next)
{
    return !PRM_HARDENING || ((uintptr_t)next & (~(uintptr_t)0 << 47 | PRM_ALIGN_MASK)) == 0;
}

PRM_INTERNAL void prmi_threads_init(void);
PRM_INTERNAL prm_arena *prmi_attach_arena(void);
/* tcache.c: a thread's cache is a chunk of its arena; its slow side. */
PRM_INTERNAL prm_tcache *prmi_tcache_create(void);
PRM_INTERNAL void prmi_tcache_destroy(prm_tcache *tc);
PRM_INTERNAL void *prmi_cache_poisoned(prm_tcache *tc, unsigned index, size_t bytes);
PRM_INTERNAL void *prmi_cache_pop(size_t bytes);
PRM_INTERNAL void *prmi_malloc_large_class(size_t bytes);
PRM_INTERNAL prm_tcache_entry *prmi_large_class_pop(prm_tcache *tc, size_t *nb);
PRM_INTERNAL int prmi_freed_into_this_cache(void *mem);
PRM_INTERNAL int prmi_free_large_class(prm_tcache *tc, void *mem, size_t size);
PRM_INTERNAL int prmi_free_keyed(void *mem);
/* Is the header after a live chunk damaged? Its PREV_INUSE must say the chunk is in use
 * and its size lie below 2^47: an overflow past the block (a NUL over the low byte, a
 * flipped high byte) or a second free of a chunk the arena has merged breaks one. The
 * cache's free asks before it takes a chunk, so caching hides nothing the arena's free
 * would have seen: one load and a test. */
static inline int next_head_damaged(size_t next_head)
{
    return ((next_head ^ PRM_PREV_INUSE) & (PRM_PREV_INUSE | ~(((size_t)1 << 47) - 1))) != 0;
}
PRM_INTERNAL int prmi_free_next_damaged(void *mem);
PRM_INTERNAL void prmi_tcache_flush(void);
/* At exit: is every entry of the calling thread's cache still as free left it (its key,
 * its link, its size)? A write after free over a cached chunk's first 16 bytes is
 * reported (as a damaged block) instead of leaving silently. */
PRM_INTERNAL void prmi_tcache_check(void);
/* free of a chunk whose cache bin is at its limit (the bin found again from the chunk,
 * so that free's fast path keeps no register for it). */
PRM_INTERNAL int prmi_cache_full(prm_tcache *tc, void *mem);
PRM_INTERNAL void *prmi_cache_fill(prm_tcache *tc, unsigned index, size_t nb);
/* malloc.c: the arena side of the cache's batches. */
PRM_INTERNAL unsigned prmi_arena_malloc_many(size_t nb, void **out, unsigned count);
PRM_INTERNAL void prmi_arena_free_many(void **mems, unsigned count);
/* malloc.c: what the cache falls back on. */
PRM_INTERNAL void *prmi_malloc_slow(size_t bytes);
PRM_INTERNAL void *prmi_malloc_in_some_arena(size_t nb);
PRM_INTERNAL int prmi_free_to_arena(void *mem);

/* This thread's arena, attaching one on first use. */
static inline prm_arena *thread_arena(void)
{
    prm_arena *av = prmi_self.arena;
    if (prm_likely(av != NULL && !av->abandoned))
        return av;
    return prmi_attach_arena();
}

/* Every arena, main first; the list only grows. Arenas a fork child abandoned are
 * skipped: the interrupted code may have left them mid-update. */
#define FOR_EACH_ARENA(av)                                                              \
    for (prm_arena *av = prmi_main_arena(); av != NULL;                                   \
         av = __atomic_load_n(&av->next, __ATOMIC_ACQUIRE))                               \
        if (!av->abandoned)

/* arena.c */
PRM_INTERNAL prm_arena *prmi_main_arena(void);
PRM_INTERNAL prm_arena *prmi_new_arena(int index);
PRM_INTERNAL prm_arena *prmi_arena_of(prm_chunk *p);
PRM_INTERNAL int prmi_fits_heap(size_t nb);
PRM_INTERNAL extern prm_lock prmi_init_lock;
PRM_INTERNAL void prmi_arena_init(prm_arena *av, int index);
PRM_INTERNAL int prmi_grow_heap(prm_arena *av, size_t nb);
PRM_INTERNAL int prmi_auto_trim(prm_arena *av);
PRM_INTERNAL int prmi_systrim(prm_arena *av, size_t pad);
PRM_INTERNAL prm_segment *prmi_segment_of(prm_arena *av, uintptr_t addr);
PRM_INTERNAL int prmi_plausible_chunk(prm_arena *av, const void *addr);
PRM_INTERNAL int prmi_plausible_link(prm_arena *av, const void *addr);
PRM_INTERNAL int prmi_discard_free_pages(prm_arena *av, size_t pad);

/* mmapped.c */
PRM_INTERNAL prm_chunk *prmi_mmap_chunk(size_t nb);
PRM_INTERNAL int prmi_munmap_chunk(prm_chunk *p);
PRM_INTERNAL prm_chunk *prmi_mremap_chunk(prm_chunk *p, size_t nb);
PRM_INTERNAL int prmi_mmapped_chunk_valid(prm_chunk *p);
PRM_INTERNAL int prmi_mmapped_entry_valid(const prm_mmap_header *h);   /* under the registry lock */
PRM_INTERNAL int prmi_mmapped_chunk_linked(prm_chunk *p, const char *check);
PRM_INTERNAL prm_chunk *prmi_mmapped_shift(prm_chunk *p, size_t lead);
PRM_INTERNAL enum prmi_mapped prmi_mmapped_lookup(const void *mem);
static inline prm_mmap_header *mmap_header_of(prm_chunk *p)
{
    return (prm_mmap_header *)((char *)p - p->prev_size);
}

/* bins.c */
PRM_INTERNAL void prmi_bins_init(prm_arena *av);
PRM_INTERNAL void prmi_unlink_chunk(prm_arena *av, prm_chunk *p);
PRM_INTERNAL void prmi_place_in_bin(prm_arena *av, prm_chunk *victim, size_t size);
PRM_INTERNAL void prmi_unsorted_push(prm_arena *av, prm_chunk *p, size_t size);
PRM_INTERNAL void prmi_consolidate(prm_arena *av);
PRM_INTERNAL void prmi_consolidate_below_top(prm_arena *av);

/* options.c */
PRM_INTERNAL int prmi_set_param(int param, long value);

/* The LD_PRELOAD shim defines this to read its options while the allocator initialises
 * (before any allocation is served): it may only call prmi_set_param and write(2). */
PRM_INTERNAL void prmi_configure(void) __attribute__((weak));
/* The LD_PRELOAD build's recorder (preload/trace.c) defines this; the fork child calls it. */
PRM_INTERNAL void prmi_rec_fork_child(void) __attribute__((weak));

/* malloc.c */
PRM_INTERNAL void *prmi_int_malloc(prm_arena *av, size_t nb);
PRM_INTERNAL void prmi_int_free(prm_arena *av, prm_chunk *p);
PRM_INTERNAL size_t prmi_free_merge(prm_arena *av, prm_chunk *p);
/* Does heap chunk p, with its size, lie inside one of av's segments? Under av's lock. */
PRM_INTERNAL int prmi_in_our_heap(prm_arena *av, prm_chunk *p);

/* remote.c: frees from threads that do not use the chunk's arena. The Python build frees
 * directly (its walks and statistics must see every free at once). */
#ifndef PRM_REMOTE_FREES
#define PRM_REMOTE_FREES (!PRM_RECOVERABLE)
#endif
/* Push the chunk whose memory is mem onto av's remote-free stack (no lock). */
PRM_INTERNAL int prmi_push_remote_free(prm_arena *av, void *mem);
/* Under av's lock: free what other threads left on av's stack; count it. */
PRM_INTERNAL void prmi_drain_remote_frees(prm_arena *av);
PRM_INTERNAL size_t prmi_remote_pending(prm_arena *av);

/* Under av's lock, first thing: free what waits on av's stack. */
static inline void prmi_drain_if_pending(prm_arena *av)
{
    if (PRM_REMOTE_FREES && prm_unlikely(__atomic_load_n(&av->remote_head, __ATOMIC_RELAXED) != NULL))
        prmi_drain_remote_frees(av);
}

/* hardened.c: the chunk-start map. A heap chunk handed out by an arena is claimed (its
 * start marked) and released when it comes back; each checks first that no live chunk
 * starts inside it, so no chunk is ever handed out, or freed, over a live one. */
PRM_INTERNAL void prmi_chunk_claim(prm_arena *av, prm_chunk *p);
PRM_INTERNAL void prmi_chunk_release(prm_arena *av, prm_chunk *p);

/* Accounting, done at the public entry points and by the remote-free drain, under the
 * arena's lock. */
static inline void account_alloc(prm_arena *av, prm_chunk *p)
{
    if (!chunk_is_mmapped(p)) {   /* mmapped chunks are counted by their registry */
        if (PRM_HARDENING)
            prmi_chunk_claim(av, p);
        av->in_use_bytes += chunk_size(p);
        av->in_use_chunks++;
    }
}

static inline void account_free(prm_arena *av, prm_chunk *p)
{
    if (PRM_HARDENING)
        prmi_chunk_release(av, p);
    av->in_use_bytes -= chunk_size(p);
    av->in_use_chunks--;
}

/* malloc_usable_size without the look-up, for a block known to be ours and live. */
PRM_INTERNAL size_t prmi_usable_size_trusted(void *mem);

/* canary.c (M_CANARY): stamp a block of `requested` bytes; verify one (PRM_OK, or the
 * report's status), giving the requested size; mark one freed; read one for prm_check. */
PRM_INTERNAL void prmi_canary_stamp(void *mem, size_t requested);
PRM_INTERNAL int prmi_canary_verify(void *mem, const char *overwritten_check, const char *freed_check);
PRM_INTERNAL size_t prmi_canary_requested(void *mem);
PRM_INTERNAL void prmi_canary_retire(void *mem);
enum prmi_canary_state { PRMI_CANARY_INTACT, PRMI_CANARY_RETIRED, PRMI_CANARY_DAMAGED };
PRM_INTERNAL enum prmi_canary_state prmi_canary_inspect(void *mem, size_t *requested, size_t *bad_offset);

/* publish.c: the live view's directory (pymalloc_real/live/ reads it from outside). */
#define PRM_LIVE_MAGIC   "pymalloc_real live view"
#define PRM_LIVE_VERSION 1

typedef struct prm_live_field {
    char name[44];              /* "struct.member", "struct" (its size) or "const.NAME" */
    uint32_t offset;            /* offsetof, or a constant's value */
    uint32_t size;              /* sizeof the member or struct; 0 for a constant */
} prm_live_field;

typedef struct prm_live_directory {
    char magic[24];             /* PRM_LIVE_MAGIC */
    uint32_t version;
    uint32_t field_size;        /* sizeof(prm_live_field) */
    uint32_t field_count;
    uint32_t report_field_count;
    const prm_live_field *fields;
    const prm_state *state;     /* the allocator: parameters, arenas, mmapped registry */
    const prm_os_counters *os_counters;
    const void *report;         /* the LD_PRELOAD shim's call counters, or NULL */
    const prm_live_field *report_fields;
} prm_live_directory;

/* The shim registers its exit-report counters (preload.c), once, at load. */
PRM_INTERNAL void prmi_publish_report(const void *report, const prm_live_field *fields, uint32_t count);

/* stats.c: the heap walker shared by the walks and the checker. */
typedef struct prmi_text {      /* a bounded, always NUL-terminated message being built */
    char *buf;
    size_t capacity;
    size_t length;
} prmi_text;
typedef int (*prmi_visit_fn)(void *ctx, prm_segment *seg, prm_chunk *p, size_t size, int kind, int tagged_in_use);
PRM_INTERNAL int prmi_walk_heap(prm_arena *av, prmi_visit_fn visit, void *ctx, prmi_text *why);

/* check.c: messages without stdio, and the one error-reporting path. */
PRM_INTERNAL void prmi_text_str(prmi_text *t, const char *s);
PRM_INTERNAL void prmi_text_hex(prmi_text *t, uintptr_t value);
PRM_INTERNAL void prmi_text_dec(prmi_text *t, uint64_t value);
PRM_INTERNAL __attribute__((noreturn)) void prmi_fail_arena(prm_arena *av, const char *check,
                                                            const char *detail, const void *ptr);
PRM_INTERNAL int prmi_fail_pointer(const char *check, const char *detail, const void *ptr);
PRM_INTERNAL void prmi_report_fault(const char *check, const char *detail, const void *ptr);
/* A damaged block (its canary, a poisoned cache bin) whose arena is still sound. */
PRM_INTERNAL int prmi_fail_block(const char *check, const char *detail, const void *ptr);
PRM_INTERNAL void prmi_refuse_corrupt_arena(prm_arena *av);

/* The public entry protocol for work under an arena's lock: take the lock, refuse a
 * corrupt arena, and (cffi build) arm the unwinding point for corruption found deeper. */
#if PRM_RECOVERABLE
#define ARENA_ENTER(av, on_failure)                                  \
    do {                                                             \
        prm_lock_acquire(&(av)->lock);                               \
        if (prm_unlikely((av)->corrupt)) {                           \
            prmi_refuse_corrupt_arena(av);                           \
            prm_lock_release(&(av)->lock);                           \
            on_failure;                                              \
        }                                                            \
        (av)->recover_armed = 1;                                     \
        if (setjmp((av)->recover) != 0) {                            \
            prm_lock_release(&(av)->lock);                           \
            on_failure;                                              \
        }                                                            \
    } while (0)
#else
/* Print-and-abort (the default) never comes back from a report, so only the continue
 * modes pay for refusing a corrupt arena and arming the unwinding point. */
#define ARENA_ENTER(av, on_failure)                                  \
    do {                                                             \
        prm_lock_acquire(&(av)->lock);                               \
        if (prm_unlikely((av)->corrupt)) {                           \
            prm_lock_release(&(av)->lock);                           \
            on_failure;                                              \
        }                                                            \
        (av)->recover_armed = 0;                                     \
        if (prm_unlikely(!(params()->check_action & PRM_CHECK_ABORT))) { \
            (av)->recover_armed = 1;                                 \
            if (setjmp((av)->recover) != 0) {                        \
                prm_lock_release(&(av)->lock);                       \
                on_failure;                                          \
            }                                                        \
        }                                                            \
    } while (0)
#endif
#define ARENA_LEAVE(av) ((av)->recover_armed = 0, prm_lock_release(&(av)->lock))

#endif
