/* lab.h - the placement-policy lab's C interface: the classical placement policies of
 * seed 001 (the minimal {is_available, size} allocator, a free list with first, next,
 * best and worst fit, the buddy system, the buddy system with a pool that defers
 * merging, fixed-size blocks in a bitmap, slab caches with kmalloc size classes), each
 * managing its own region of real mmapped memory, beside our ptmalloc core and glibc's
 * malloc, all behind one interface, and the replay loop that drives any of them over a
 * recorded trace.
 *
 * A policy's state lives in the struct lab_policy the caller holds (lab_policy_new /
 * lab_policy_delete); nothing here has global state, so any number of policies can live
 * side by side in one process. The lab stands beside the allocator: it shares the kernel
 * layer (csrc/core/os.h) and the build with the core, not its bins.
 *
 * Footprint (what each policy has taken from the OS), honestly:
 *   - region policies reserve their whole region with one mmap (virtual memory only, no
 *     page is backed until touched) and never give memory back; their footprint is the
 *     high-water mark of the memory they have carved out (the highest byte of the region
 *     they ever placed a block or a header in, rounded up to pages), plus the pages of
 *     their side tables up to the same mark. It never shrinks;
 *   - ptmalloc (our core) and glibc: what their own accounting says they hold from the
 *     OS now (heap segments + mmapped chunks; glibc: mallinfo2 arena + hblkhd), minus
 *     what it said when the policy was created. glibc's malloc is the process's own, so
 *     memory it already held may serve the trace for free, and frees may shrink it.
 *
 * pymalloc_real/_build.py hands this header to cffi as it is (minus the preprocessor
 * lines), so it must stay within what cffi's parser takes: no macros with arguments,
 * no inline functions, #define only of plain integer constants. */
#ifndef LAB_H
#define LAB_H

#include <stddef.h>
#include <stdint.h>

/* Status codes. */
enum lab_status {
    LAB_OK = 0,
    LAB_ERR_NOMEM = 1,          /* the region (or the side tables) could not be mapped */
    LAB_ERR_INVALID = 2,        /* a parameter out of range (see lab_config) */
    LAB_ERR_UNSUPPORTED = 3,    /* the policy cannot do this (walk of ptmalloc/glibc) */
    LAB_ERR_VERIFY = 4,         /* replay: a block's pattern, zeroing or alignment broke */
    LAB_ERR_TRACE = 5,          /* replay: an op code or id out of range */
};

/* The policies. LAB_NULL is the replay loop's baseline: it hands out fake addresses and
 * does nothing, so a run with it measures the loop alone. */
enum lab_kind {
    LAB_MINIMAL = 0,            /* headers {is_available, size}, one walk over all blocks */
    LAB_FIRST_FIT = 1,          /* address-ordered free list, boundary tags, coalescing */
    LAB_NEXT_FIT = 2,
    LAB_BEST_FIT = 3,
    LAB_WORST_FIT = 4,
    LAB_BUDDY = 5,              /* power-of-two orders, split on demand, merge by address */
    LAB_BUDDY_POOL = 6,         /* buddy whose small frees wait until their pool is free */
    LAB_BITMAP = 7,             /* fixed-size blocks, one per request, in a bitmap */
    LAB_SLAB = 8,               /* slab caches, kmalloc size classes over them */
    LAB_PTMALLOC = 9,           /* our core: prm_malloc & co. */
    LAB_GLIBC = 10,             /* the process's malloc */
    LAB_NULL = 11,
    LAB_KIND_COUNT = 12,
};

/* What lab_policy_new takes. Zero in a field chooses its default. */
struct lab_config {
    int kind;                   /* enum lab_kind */
    int pad_;
    uint64_t region_size;       /* bytes of address space (default 256 MiB); the buddy
                                   uses the largest power of two that fits */
    uint64_t min_block;         /* buddy: smallest block, a power of two >= 16 (16) */
    uint64_t pool_size;         /* buddy_pool: a pool, a power of two (64 KiB, or less
                                   when the region is smaller) */
    uint64_t block_size;        /* bitmap: the one block size, a multiple of 16 (256) */
    uint64_t slab_size;         /* slab: bytes per slab for objects up to 512 bytes, a
                                   power-of-two number of pages (4096); bigger objects get
                                   slabs holding at least 8 of them */
};

/* Every region policy's blocks are aligned to 16 bytes (memalign asks for more). */
#define LAB_ALIGNMENT 16

struct lab_policy;

/* A policy on a fresh region. LAB_ERR_INVALID names no field: lab.py checks them first
 * and says which. */
int lab_policy_new(const struct lab_config *config, struct lab_policy **out);
void lab_policy_delete(struct lab_policy *policy);        /* NULL is fine */

/* The common interface. malloc returns NULL when the region has no room; size 0 gives a
 * unique smallest block. memalign takes a power-of-two alignment. free(NULL) does
 * nothing. realloc keeps the old block on failure (NULL returned). */
void *lab_malloc(struct lab_policy *policy, size_t size);
void *lab_calloc(struct lab_policy *policy, size_t size);
void *lab_memalign(struct lab_policy *policy, size_t alignment, size_t size);
void lab_free(struct lab_policy *policy, void *block);
void *lab_realloc(struct lab_policy *policy, void *block, size_t size);
size_t lab_usable_size(struct lab_policy *policy, void *block);

/* One entry of a walk, in address order over the whole region. */
enum lab_block_kind {
    LAB_BLOCK_FREE = 0,         /* free for any request the policy would place here */
    LAB_BLOCK_USED = 1,         /* a live block: address is what malloc returned */
    LAB_BLOCK_META = 2,         /* the policy's own bookkeeping (a slab's descriptor) */
    LAB_BLOCK_UNTOUCHED = 3,    /* the region beyond the high-water mark */
};

struct lab_block {
    uint64_t address;           /* used: the pointer malloc returned; else the start */
    uint64_t size;              /* used: the usable size; else the length */
    uint64_t span_start;        /* the whole block with its header */
    uint64_t span_size;
    int32_t kind;               /* enum lab_block_kind */
    int32_t pad_;
};

/* Every block of the region in address order: fills at most `capacity` entries and
 * returns how many there are in all, or -LAB_ERR_UNSUPPORTED for ptmalloc and glibc,
 * whose blocks are not ours to walk here (pymalloc_real.introspect walks the core). */
long lab_walk(struct lab_policy *policy, struct lab_block *out, size_t capacity);

struct lab_stats {
    uint64_t footprint;         /* bytes taken from the OS now (see the top) */
    uint64_t region_base;       /* 0 for ptmalloc and glibc */
    uint64_t region_size;
    uint64_t free_total;        /* free bytes below the high-water mark (ptmalloc and
                                   glibc: UINT64_MAX, unknown) */
    uint64_t free_largest;      /* the largest free block (bitmap: the longest run of
                                   free blocks; slab: of free objects and page runs) */
    uint64_t splits;            /* buddy: blocks split; fits: blocks split */
    uint64_t merges;            /* buddy: buddies merged; fits/minimal: neighbours merged */
    uint64_t pool_releases;     /* buddy_pool: pools merged back whole */
    uint64_t slabs;             /* slab: slabs held (full, partial and empty) */
};

void lab_stats(struct lab_policy *policy, struct lab_stats *out);

/* ---- Slab caches, kmem_cache style (LAB_SLAB only) ----------------------------------
 * The slab policy starts with the kmalloc caches (16, 32, 64, 96, 128, 192, 256, 512,
 * 1K, 2K, 4K, 8K, 16K, 32K bytes: no kmalloc-8, as 16 is the lab's alignment; caches
 * 0 .. LAB_KMALLOC_CACHES - 1); lab_malloc takes the smallest that fits and bigger
 * requests get a power-of-two run of pages of their own. More caches can be made for one
 * object size each. A constructor, if given, runs once per object when its slab is made,
 * and a freed object goes back to the cache unchanged (it stays "constructed"). */
#define LAB_SLAB_MAX_CACHES 64
#define LAB_KMALLOC_CACHES 14

/* A new cache: its index (>= LAB_KMALLOC_CACHES), or -LAB_ERR_INVALID (size 0 or above
 * 32 KiB, alignment not a power of two, not a slab policy, too many caches). */
int lab_kmem_cache_create(struct lab_policy *policy, const char *name, size_t size,
                          size_t align, void (*ctor)(void *object));
void *lab_kmem_cache_alloc(struct lab_policy *policy, int cache);
void lab_kmem_cache_free(struct lab_policy *policy, int cache, void *object);

struct lab_cache_info {
    char name[32];
    uint64_t object_size;       /* bytes per object, alignment included */
    uint64_t slab_size;         /* bytes per slab */
    uint64_t objects_per_slab;
    uint64_t slabs_full;
    uint64_t slabs_partial;
    uint64_t slabs_empty;
    uint64_t objects_in_use;
};

/* LAB_OK, or LAB_ERR_INVALID for a cache that does not exist. */
int lab_kmem_cache_info(struct lab_policy *policy, int cache, struct lab_cache_info *out);

/* ---- Replay --------------------------------------------------------------------------
 * One operation of a trace, exactly as pymalloc_real.trace packs it (24 bytes, little
 * endian, struct.pack('<BBHIQQ', op, align_log2, thread, 0, id, size)). Object ids are
 * dense, 0 .. n_objects - 1; a realloc'd object keeps its id. */
enum lab_op_code {
    LAB_OP_MALLOC = 1,          /* malloc(size) -> id */
    LAB_OP_FREE = 2,            /* free(id) */
    LAB_OP_REALLOC = 3,         /* realloc(id, size) */
    LAB_OP_CALLOC = 4,          /* calloc(size), size the total bytes */
    LAB_OP_MEMALIGN = 5,        /* memalign(1 << align_log2, size) */
};

struct lab_op {
    uint8_t op;
    uint8_t align_log2;
    uint16_t thread;
    uint32_t reserved;
    uint64_t id;
    uint64_t size;
};

struct lab_replay_options {
    int verify;                 /* write a pattern into each block, check it on free and
                                   realloc, check calloc's zeros and every alignment */
    int free_remaining;         /* after the run (untimed), free what is still live */
    uint64_t sample_every;      /* ops between two samples (0: no samples) */
    uint64_t stop_after;        /* run only this many ops (0: all); the picture's moment */
    uint64_t time_limit_ns;     /* stop (timed_out) once the loop has run this long,
                                   checked every 4096 ops (0: no limit) */
    /* Called after each sample with visit_context and the ops done so far, while the
     * loop is paused: the policy then holds exactly the objects live at that moment, so
     * the caller may walk it (the run report's heap map replays through our core this
     * way). Its time is not counted in the loop's. NULL: no call. */
    void (*visit)(void *context, uint64_t op);
    void *visit_context;
    uint64_t sample_at;         /* one more sample after exactly this many ops (0: none):
                                   the report's heap map at the peak of live bytes */
};

/* One point of the time series. */
struct lab_sample {
    uint64_t op;                /* ops done when it was taken */
    uint64_t footprint;
    uint64_t live_bytes;        /* requested bytes of live objects */
    uint64_t usable_bytes;      /* usable bytes of live objects */
    uint64_t free_total;
    uint64_t free_largest;
};

struct lab_replay_result {
    uint64_t ops;               /* ops run */
    uint64_t mallocs;           /* malloc, calloc and memalign that succeeded */
    uint64_t frees;
    uint64_t reallocs;
    uint64_t failed;            /* requests the policy refused (NULL) */
    uint64_t skipped_frees;     /* frees and reallocs of ids not live (a failed malloc) */
    uint64_t peak_footprint;
    uint64_t final_footprint;
    uint64_t peak_live;         /* requested bytes live at the peak */
    uint64_t internal_at_peak;  /* usable - requested over the live set at that moment */
    uint64_t peak_internal;     /* the largest usable - requested seen */
    uint64_t elapsed_ns;        /* the loop, clock_gettime around it */
    long minor_faults;          /* getrusage around the loop */
    long major_faults;
    uint64_t samples;           /* samples written (at most the capacity) */
    uint64_t error_op;          /* LAB_ERR_VERIFY / LAB_ERR_TRACE: the op's index */
    int error_detail;           /* which check: enum lab_verify_check */
    int timed_out;              /* 1: stopped by time_limit_ns after `ops` ops */
};

enum lab_verify_check {
    LAB_CHECK_NONE = 0,
    LAB_CHECK_HEAD = 1,         /* the pattern at a block's start changed */
    LAB_CHECK_TAIL = 2,         /* the pattern at a block's end changed */
    LAB_CHECK_ZERO = 3,         /* calloc's block was not zero */
    LAB_CHECK_ALIGN = 4,        /* a block not aligned as promised */
    LAB_CHECK_USABLE = 5,       /* usable size smaller than the request */
    LAB_CHECK_OP = 6,           /* an unknown op code */
    LAB_CHECK_ID = 7,           /* an id >= n_objects, or malloc of a live id */
};

/* Run ops[0 .. n_ops) (or the first options->stop_after) on `policy`. Samples go to
 * samples[0 .. capacity), every options->sample_every ops and after the last op. The
 * per-object table is allocated here (n_objects entries) and freed before returning; the
 * objects still live stay in the policy (unless free_remaining), so lab_walk shows the
 * region at that moment. Returns LAB_OK, LAB_ERR_NOMEM (the table), LAB_ERR_TRACE or
 * LAB_ERR_VERIFY (result->error_op and error_detail say where and what); the result is
 * filled up to the op that stopped the run. */
int lab_replay(struct lab_policy *policy, const struct lab_op *ops, size_t n_ops,
               size_t n_objects, const struct lab_replay_options *options,
               struct lab_sample *samples, size_t capacity,
               struct lab_replay_result *result);

#endif
