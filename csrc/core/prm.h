/* prm.h - the public C interface of the pymalloc_real core: the allocation functions
 * with a prm_ prefix (they never replace the process's malloc), mallopt and trimming,
 * and the introspection that Python turns into objects. Introspection fills plain
 * structs in caller-provided arrays and never allocates, so looking does not disturb
 * the heap being looked at.
 *
 * pymalloc_real/_build.py hands this header to cffi as it is (minus the preprocessor
 * lines), so it must stay within what cffi's parser takes: no macros with arguments,
 * no inline functions. */
#ifndef PRM_H
#define PRM_H

#include <stddef.h>
#include <stdint.h>

/* Status codes (prm_free, prm_check, prm_take_error). */
enum prm_status {
    PRM_OK = 0,
    PRM_ERR_INVALID_POINTER = 1,   /* a pointer malloc never returned, or a freed one */
    PRM_ERR_CORRUPTION = 2,        /* the heap's own structures are damaged */
};

/* mallopt parameters: glibc's numbers and meanings. */
#define PRM_M_MXFAST          1
#define PRM_M_TRIM_THRESHOLD -1
#define PRM_M_TOP_PAD        -2
#define PRM_M_MMAP_THRESHOLD -3
#define PRM_M_MMAP_MAX       -4
#define PRM_M_CHECK_ACTION   -5
#define PRM_M_PERTURB        -6
#define PRM_M_ARENA_TEST     -7
#define PRM_M_ARENA_MAX      -8
/* Not a mallopt number in glibc (there it is the tunable glibc.malloc.tcache_count):
 * chunks kept per size in each thread's cache, 0 to turn the caches off. */
#define PRM_TCACHE_COUNT     -100
/* Ours: 1 (the default) lets a thread-cache bin that overflows raise its limit past
 * tcache_count (tcache.c); 0 keeps every bin at tcache_count, as glibc does. */
#define PRM_TCACHE_GROW      -102
/* Not in glibc either: 1 gives every block a canary after its requested size, checked
 * by free, realloc and prm_check (see canary.c); 0 (the default) turns it off. Refused
 * (0) while any block is live, since blocks carry a canary or not from their birth. */
#define PRM_M_CANARY         -101
/* Not in glibc: 1 turns hardened mode on (hardened.c): the canary, a quarantine that
 * delays reuse of freed blocks and checks them for writes, inaccessible pages for freed
 * mapped blocks and for zero-size blocks. Refused while any block is live, like M_CANARY. */
#define PRM_M_HARDENED       -103

/* ---- Allocation (glibc semantics; failures return NULL with errno) ---------------- */
void  *prm_malloc(size_t bytes);
int    prm_free(void *mem);                         /* PRM_OK or an error status */
/* C23's free_sized and free_aligned_sized (and C++'s sized deletes): the size (and the
 * alignment) must be the block's, or the mismatch is reported (hardened.c). */
int    prm_free_sized(void *mem, size_t size);
int    prm_free_aligned_sized(void *mem, size_t alignment, size_t size);
void  *prm_calloc(size_t count, size_t size);
void  *prm_realloc(void *mem, size_t bytes);        /* (p, 0) frees p, returns NULL */
void  *prm_reallocarray(void *mem, size_t count, size_t size);   /* ENOMEM on overflow */
void  *prm_memalign(size_t alignment, size_t bytes);/* EINVAL unless a power of two */
int    prm_posix_memalign(void **out, size_t alignment, size_t bytes);
void  *prm_aligned_alloc(size_t alignment, size_t bytes);
void  *prm_valloc(size_t bytes);
void  *prm_pvalloc(size_t bytes);
size_t prm_usable_size(void *mem);
int    prm_mallopt(int param, int value);           /* 1 on success, 0 on a bad value */
int    prm_malloc_trim(size_t pad);                 /* 1 if memory went back to the OS */

/* Write one byte per page of [mem, mem+length) without changing its contents, so each
 * page that was not yet backed takes exactly its first-touch fault. */
void   prm_touch(void *mem, size_t length);

/* ---- Errors ------------------------------------------------------------------------ */
typedef struct prm_error {
    int status;                 /* enum prm_status, PRM_OK when there is none */
    uintptr_t pointer;          /* the pointer involved, or 0 */
    char check[80];             /* the check that failed, glibc's wording where it has one */
    char detail[160];           /* what was found */
} prm_error;

/* The last error reported to the calling thread, which is then cleared. */
int prm_take_error(prm_error *out);

/* ---- Introspection ----------------------------------------------------------------- */
typedef struct prm_stats {
    /* mallinfo2 */
    size_t arena;               /* bytes held from the OS by the heap segments */
    size_t ordblks;             /* free chunks, not counting fast bins */
    size_t smblks;              /* fast-bin chunks */
    size_t hblks;               /* mmapped chunks */
    size_t hblkhd;              /* bytes in mmapped chunks' mappings */
    size_t usmblks;             /* always 0, as in glibc */
    size_t fsmblks;             /* bytes in fast-bin chunks */
    size_t uordblks;            /* arena - fordblks */
    size_t fordblks;            /* free bytes in the heap, top included */
    size_t keepcost;            /* the top chunk's size */
    /* accounting */
    size_t in_use_bytes;        /* chunk sizes of every allocation not yet freed */
    size_t in_use_chunks;
    size_t max_arena;           /* high-water mark of `arena` */
    size_t max_hblkhd;          /* high-water mark of `hblkhd` */
    size_t max_hblks;
    size_t segments;            /* heap segments of every arena */
    size_t arenas;              /* arenas in use (abandoned ones not counted) */
    int tcache_count;           /* per-thread cache chunks per size; 0: caches off */
    int tcache_grow;            /* 1: cache bins that overflow raise their limits */
    uint64_t trims;             /* times the break was lowered */
    uint64_t consolidations;
    uint64_t segments_opened;   /* segments started because the break was not ours */
    uint64_t discards;          /* malloc_trim's madvise(MADV_DONTNEED) calls */
    size_t remote_pending;      /* chunks freed by threads not using their arena, waiting for
                                   the arena's next lock holder to free them (counted in use) */
    uint64_t remote_frees;      /* such frees done so far (LD_PRELOAD build; 0 in Python's) */
    uint64_t tcache_raises;     /* thread-cache bins that overflowed and raised their limit */
    uint64_t tcache_drains;     /* batches a full cache bin gave back to its arena */
    uint64_t tcache_fills;      /* batches a cache bin took from its arena on a miss */
    size_t pagemap_bytes;       /* address space of the ownership map's leaves (pagemap.h) */
    /* parameters in force */
    size_t mmap_threshold;
    size_t trim_threshold;
    size_t top_pad;
    size_t max_fast;
    int n_mmaps_max;
    int dynamic_thresholds;     /* 1 until mallopt fixed a threshold */
    int perturb_byte;
    int check_action;
    int canary;                 /* M_CANARY in force */
    size_t arena_test;
    size_t arena_max;
    /* the kernel layer's counters */
    uint64_t brk_reads, brk_moves, brk_failures;
    uint64_t mmap_calls, mmap_failures, munmap_calls, mremap_calls, mremap_failures;
    uint64_t discard_calls, mincore_calls, tombstone_calls;
    uint64_t brk_bytes_grown, brk_bytes_shrunk, mmap_bytes, munmap_bytes, discard_bytes;
} prm_stats;

void prm_get_stats(prm_stats *out);

/* What a walk entry is. */
enum prm_chunk_kind {
    PRM_KIND_CHUNK = 0,         /* an ordinary chunk: in use or free by its tags */
    PRM_KIND_TOP = 1,
    PRM_KIND_FENCE = 2,         /* fence post closing a segment */
    PRM_KIND_MMAPPED = 3,
};

typedef struct prm_chunk_info {
    uintptr_t address;          /* the chunk (its prev_size word); memory is +16 */
    size_t size;                /* without flag bits */
    uint32_t flags;             /* raw P (1), M (2), A (4) bits */
    int32_t kind;               /* enum prm_chunk_kind */
    int32_t tagged_in_use;      /* in use according to the boundary tags */
    int32_t arena;              /* arena index, -1 for mmapped chunks */
    int32_t segment;            /* segment serial, -1 for mmapped chunks */
    int32_t pad_;
    uintptr_t mapping;          /* mmapped chunks: the whole mapping, header included */
    size_t mapping_length;      /* (0 for heap chunks) */
} prm_chunk_info;

/* Every chunk of every segment of every arena, each segment in address order, then
 * every mmapped chunk.
 * Fills at most `capacity` entries and returns how many there are in all, or -1 if the
 * heap is too damaged to walk (prm_check says why). */
long prm_walk_chunks(prm_chunk_info *out, size_t capacity);

enum prm_bin_kind {
    PRM_BIN_FAST = 0,
    PRM_BIN_UNSORTED = 1,
    PRM_BIN_SMALL = 2,
    PRM_BIN_LARGE = 3,
};

typedef struct prm_bin_entry {
    int32_t kind;               /* enum prm_bin_kind */
    int32_t index;              /* the fast-bin index, or the bin number (1..126) */
    int32_t arena;
    int32_t pad_;
    uintptr_t address;          /* chunk address */
    size_t size;
} prm_bin_entry;

/* Every chunk in every bin, bins in order, each bin from its front. Returns the count
 * in all (fills at most `capacity`), or -1 if a list is too damaged to follow. */
long prm_walk_bins(prm_bin_entry *out, size_t capacity);

typedef struct prm_segment_info {
    uintptr_t start;            /* first byte obtained from the OS */
    uintptr_t end;              /* one past the last */
    int32_t kind;               /* 0 brk, 1 mmap */
    int32_t serial;
    int32_t arena;
    int32_t holds_top;
} prm_segment_info;

long prm_walk_segments(prm_segment_info *out, size_t capacity);

typedef struct prm_arena_info {
    int32_t index;
    int32_t corrupt;
    uintptr_t top;
    size_t top_size;
    size_t system_bytes;
    size_t max_system_bytes;
    size_t in_use_bytes;
    size_t in_use_chunks;
    size_t free_bytes;          /* in bins, fast bins and top */
    size_t free_chunks;         /* in bins and fast bins */
    size_t fast_chunks;
    size_t segments;
    size_t attached_threads;
} prm_arena_info;

long prm_arenas(prm_arena_info *out, size_t capacity);

/* Validate the whole heap: boundary tags, bin links and sizes, fast bins, top, the
 * mmapped-chunk registry and the accounting. PRM_OK, or PRM_ERR_CORRUPTION with a
 * message in `message`. Changes nothing. */
int prm_check(char *message, size_t capacity);

/* ---- The kernel, seen through the core's kernel layer ------------------------------ */
uintptr_t prm_current_break(void);
/* mincore(2) over the pages covering [address, address + length): one byte per page,
 * bit 0 set if resident. Returns 0, or -errno (-ENOMEM: part of the range is not
 * mapped at all). */
int       prm_residency(uintptr_t address, size_t length, unsigned char *pages);
size_t    prm_page_size(void);

/* MADV_NOHUGEPAGE over the pages covering [address, address + length): faults then
 * come one per 4 KiB page even where transparent huge pages are "always". 0 or -errno. */
int       prm_no_huge_pages(uintptr_t address, size_t length);

/* ---- Process layout (demo probe, csrc/probe/layout.c) ----------------------------- */
typedef struct prm_layout {
    uintptr_t text;             /* a function */
    uintptr_t data;             /* an initialised global */
    uintptr_t bss;              /* an uninitialised global */
    uintptr_t heap_break;       /* the program break */
    uintptr_t stack;            /* a local variable */
    uintptr_t mapping;          /* a fresh one-page anonymous mmap */
    size_t mapping_length;
} prm_layout;

/* Fill `out`; its mapping stays until prm_process_layout_release. 0, or -1. */
int prm_process_layout(prm_layout *out);
int prm_process_layout_release(prm_layout *layout);

/* ---- The ledger: where every byte is ------------------------------------------------ */
typedef struct prm_ledger_info {
    size_t heap_bytes;              /* held by heap segments (from brk or the mmap fallback) */
    size_t in_use_bytes;            /* heap chunks handed out */
    size_t in_use_resident;
    size_t free_binned_bytes;       /* free chunks in the unsorted, small and large bins */
    size_t free_binned_resident;
    size_t free_fast_bytes;         /* chunks in fast bins (free, never returned) */
    size_t free_fast_resident;
    size_t top_bytes;
    size_t top_resident;
    size_t overhead_bytes;          /* segment headers, fence posts, alignment */
    size_t mmapped_bytes;           /* mappings of mmapped chunks */
    size_t mmapped_in_use_bytes;    /* the chunks inside them */
    size_t mmapped_resident;
    size_t mmapped_chunks;
    uint64_t released_by_trim;      /* cumulative: break lowered */
    uint64_t released_by_munmap;    /* cumulative: mappings given back */
    uint64_t released_by_discard;   /* cumulative: MADV_DONTNEED inside the heap */
} prm_ledger_info;

/* Walk the heap and the mmapped chunks, asking mincore which of their pages are
 * resident. 0, or -1 if the heap is too damaged to walk. */
int prm_ledger(prm_ledger_info *out);

/* Register the pthread_atfork handlers that keep the allocator usable in the child of a
 * fork (threads.c). Idempotent. 0, or an error number. */
int prm_install_fork_handlers(void);

/* Tests: make the next `count` brk growths (op 0), mmaps (1) or mremaps (2) fail. */
int prm_inject_os_failures(int op, unsigned count);

#endif
