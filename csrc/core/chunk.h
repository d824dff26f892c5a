/* chunk.h - the chunk: boundary tags, flag bits, alignment, request-to-size
 * conversion and the size-to-bin mapping. Everything here is a pure function of
 * addresses and sizes; nothing touches an arena.
 *
 * A chunk in use                          A free chunk (in a bin)
 *
 *  chunk-> +-------------------------+     chunk-> +-------------------------+
 *          | prev_size (if P == 0)   |             | prev_size (if P == 0)   |
 *          +-------------------+-+-+-+             +-------------------+-+-+-+
 *          | size              |A|M|P|             | size              |A|M|P|
 *  mem  -> +-------------------+-+-+-+             +-------------------+-+-+-+
 *          | user data ...           |             | fd  (next in bin)       |
 *          |                         |             | bk  (previous in bin)   |
 *          |                         |             | fd_nextsize (large bins)|
 *          |                         |             | bk_nextsize (large bins)|
 *          |                         |             | ... unused ...          |
 *  next -> +-------------------------+     next -> +-------------------------+
 *          | (user data: the last    |             | prev_size == size above |
 *          |  8 bytes are ours)      |             +-------------------+-+-+-+
 *          +-------------------+-+-+-+             | size              |A|M|0|
 *          | size              |A|M|1|             +-------------------+-+-+-+
 *
 * Invariants:
 *  - chunk addresses and sizes are multiples of 16 (PRM_ALIGN), so mem is 16-aligned;
 *    every chunk is at least PRM_MINSIZE (32) bytes, except fence posts (16 bytes).
 *  - P is set when the previous chunk is in use; only then may prev_size hold user data.
 *    The first chunk of a segment has P = 1 so nobody looks below the segment.
 *  - M marks a chunk with its own mmap; its neighbours are not chunks. For an mmapped
 *    chunk, prev_size is the distance from the start of the mapping to the chunk.
 *  - A marks a chunk of a non-main arena.
 *  - Whether a chunk is in use is recorded in the P bit of the chunk after it. Fast-bin
 *    chunks keep that bit set: to the boundary tags they look in use.
 */
#ifndef PRM_CHUNK_H
#define PRM_CHUNK_H

#include <stddef.h>
#include <stdint.h>

typedef struct prm_chunk {
    size_t prev_size;
    size_t size;
    struct prm_chunk *fd;
    struct prm_chunk *bk;
    struct prm_chunk *fd_nextsize;
    struct prm_chunk *bk_nextsize;
} prm_chunk;

#define PRM_SIZE_SZ      ((size_t)sizeof(size_t))
#define PRM_ALIGN        ((size_t)16)
#define PRM_ALIGN_MASK   (PRM_ALIGN - 1)
#define PRM_CHUNK_HDR    (2 * PRM_SIZE_SZ)
#define PRM_MINSIZE      ((size_t)32)
#define PRM_FENCE_SIZE   PRM_CHUNK_HDR

#define PRM_PREV_INUSE   ((size_t)1)
#define PRM_IS_MMAPPED   ((size_t)2)
#define PRM_NON_MAIN     ((size_t)4)
#define PRM_FLAG_BITS    (PRM_PREV_INUSE | PRM_IS_MMAPPED | PRM_NON_MAIN)

/* Largest request we accept: keeps every size computation (request + overhead +
 * alignment + page rounding) far from overflow, and no object may exceed PTRDIFF_MAX. */
#define PRM_MAX_REQUEST  ((size_t)PTRDIFF_MAX - 16 * 4096)

/* A size word may be written by another thread (the P bit, by whoever frees or
 * allocates the chunk before it) while this one reads it without the arena's lock, so
 * size words are read and written with relaxed atomics (plain moves on the machines we
 * build for): see store_size below. */
static inline size_t load_size(const prm_chunk *p) { return __atomic_load_n(&p->size, __ATOMIC_RELAXED); }
static inline size_t chunk_size(const prm_chunk *p) { return load_size(p) & ~PRM_FLAG_BITS; }
static inline int    prev_inuse(const prm_chunk *p) { return (int)(load_size(p) & PRM_PREV_INUSE); }
static inline int    chunk_is_mmapped(const prm_chunk *p) { return (int)((load_size(p) & PRM_IS_MMAPPED) != 0); }
static inline int    chunk_non_main(const prm_chunk *p) { return (int)((load_size(p) & PRM_NON_MAIN) != 0); }

static inline void *chunk2mem(prm_chunk *p) { return (char *)p + PRM_CHUNK_HDR; }
static inline prm_chunk *mem2chunk(void *mem) { return (prm_chunk *)((char *)mem - PRM_CHUNK_HDR); }
/* Integer arithmetic, not pointer arithmetic: a damaged size or prev_size may lead
 * anywhere, and the checks that catch it must run before, not after, undefined behaviour. */
static inline prm_chunk *chunk_at(prm_chunk *p, size_t offset) { return (prm_chunk *)((uintptr_t)p + offset); }
static inline prm_chunk *chunk_below(prm_chunk *p, size_t offset) { return (prm_chunk *)((uintptr_t)p - offset); }
static inline prm_chunk *next_chunk(prm_chunk *p) { return chunk_at(p, chunk_size(p)); }

/* Every write of a size word is a relaxed atomic store: the writers hold the arena's lock
 * or own the chunk, so no update is lost, and the paths that read size words without the
 * lock (the thread cache's free, the checks free makes before it locks, the large cache's
 * look at the next chunk) race with nothing. */
static inline void store_size(prm_chunk *p, size_t head) { __atomic_store_n(&p->size, head, __ATOMIC_RELAXED); }

/* In-use state lives in the P bit of the chunk that follows. */
static inline int  inuse_at(prm_chunk *p, size_t offset) { return prev_inuse(chunk_at(p, offset)); }
static inline void set_inuse_at(prm_chunk *p, size_t offset)
{
    prm_chunk *next = chunk_at(p, offset);
    store_size(next, next->size | PRM_PREV_INUSE);
}
static inline void clear_inuse_at(prm_chunk *p, size_t offset)
{
    prm_chunk *next = chunk_at(p, offset);
    store_size(next, next->size & ~PRM_PREV_INUSE);
}

/* Replace size and flags at once / only the size, keeping the flags. */
static inline void set_head(prm_chunk *p, size_t head) { store_size(p, head); }
static inline void set_head_size(prm_chunk *p, size_t size) { store_size(p, (p->size & PRM_FLAG_BITS) | size); }
/* The footer of a free chunk is the prev_size of the chunk after it. */
static inline void set_foot(prm_chunk *p, size_t size) { chunk_at(p, size)->prev_size = size; }

static inline int aligned_ok(uintptr_t x) { return (x & PRM_ALIGN_MASK) == 0; }
static inline uintptr_t align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
static inline uintptr_t align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }

/* The chunk size that serves a request of `req` bytes: the user may use the next
 * chunk's prev_size word, so a chunk carries only SIZE_SZ of overhead. */
static inline size_t request2size(size_t req)
{
    size_t size = (req + PRM_SIZE_SZ + PRM_ALIGN_MASK) & ~PRM_ALIGN_MASK;
    return size < PRM_MINSIZE ? PRM_MINSIZE : size;
}

/* request2size, refusing requests so large that the arithmetic could wrap. */
static inline int checked_request2size(size_t req, size_t *size)
{
    if (req > PRM_MAX_REQUEST)
        return 0;
    *size = request2size(req);
    return 1;
}

/* ---- Bins ------------------------------------------------------------------------
 * Index 0 is unused, 1 is the unsorted bin, 2..63 are the 62 small bins (one chunk
 * size each, 32 to 1008 bytes in steps of 16), 64..126 the 63 large bins, each a
 * range of sizes kept sorted largest first (ranges widen: 64 bins of 64 bytes, then
 * 512, 4096, 32768, 262144 and one open-ended bin), as in glibc on 64-bit. */
#define PRM_NBINS             128
#define PRM_UNSORTED_BIN      1
#define PRM_NSMALLBINS        64
#define PRM_MIN_LARGE_SIZE    ((size_t)(PRM_NSMALLBINS * PRM_ALIGN))   /* 1024 */
#define PRM_FIRST_LARGE_BIN   64
#define PRM_LAST_BIN          126

static inline int in_smallbin_range(size_t size) { return size < PRM_MIN_LARGE_SIZE; }
static inline unsigned smallbin_index(size_t size) { return (unsigned)(size >> 4); }

static inline unsigned largebin_index(size_t size)
{
    if ((size >> 6) <= 48)  return 48 + (unsigned)(size >> 6);
    if ((size >> 9) <= 20)  return 91 + (unsigned)(size >> 9);
    if ((size >> 12) <= 10) return 110 + (unsigned)(size >> 12);
    if ((size >> 15) <= 4)  return 119 + (unsigned)(size >> 15);
    if ((size >> 18) <= 2)  return 124 + (unsigned)(size >> 18);
    return PRM_LAST_BIN;
}

static inline unsigned bin_index(size_t size)
{
    return in_smallbin_range(size) ? smallbin_index(size) : largebin_index(size);
}

/* ---- Fast bins ---------------------------------------------------------------------
 * Singly linked LIFO lists of chunks of one size each (32, 48, ... 176 bytes), not
 * coalesced until a consolidation. Chunks up to max_fast go there (default 128 bytes,
 * M_MXFAST, at most PRM_MAX_FAST). */
#define PRM_MAX_FAST_REQUEST   ((size_t)160)                     /* glibc: 80 * SIZE_SZ / 4 */
#define PRM_MAX_FAST           request2size(PRM_MAX_FAST_REQUEST) /* 176 */
#define PRM_NFASTBINS          10
#define PRM_DEFAULT_MXFAST     ((size_t)128)

static inline unsigned fastbin_index(size_t size) { return (unsigned)(size >> 4) - 2; }

/* ---- Safe-linking (glibc 2.32) -------------------------------------------------------
 * The singly linked lists (fast bins and thread caches) store each next pointer XORed
 * with the address of the word it is stored in, shifted right by the page bits; the
 * list heads, in the arena and the cache, stay plain. A pointer written over a freed
 * chunk (a use-after-free, an overflow) then decodes to garbage instead of to the
 * written value, and garbage is misaligned 15 times in 16: every pop checks alignment.
 * NULL is stored as the shifted slot address, so a zeroed link is caught too. */
/* PRM_HARDENING=0 builds the core without the checks this project added to glibc's
 * (safe-linking, sealed links, the lookups before a header is trusted, top sanity), for
 * one purpose: measuring what they cost (benchmarks/README.md). Never ship it. */
#ifndef PRM_HARDENING
#define PRM_HARDENING 1
#endif

static inline void *protect_link(const void *slot, const void *next)
{
    return PRM_HARDENING ? (void *)(((uintptr_t)slot >> 12) ^ (uintptr_t)next) : (void *)next;
}
#define reveal_link(slot, stored) protect_link((slot), (stored))

/* A fast-bin chunk's successor, and linking one in front of another. A fast-bin chunk
 * does not use bk, so bk seals the link: it holds the stored link's complement, and a
 * write over fd (or fd and bk alike) breaks the seal before the link is followed. */
static inline prm_chunk *fastbin_next(prm_chunk *p) { return reveal_link(&p->fd, p->fd); }
static inline void fastbin_link(prm_chunk *p, prm_chunk *next)
{
    p->fd = protect_link(&p->fd, next);
    if (PRM_HARDENING)
        p->bk = (prm_chunk *)~(uintptr_t)p->fd;
}
static inline int fastbin_sealed(const prm_chunk *p) { return !PRM_HARDENING || (uintptr_t)p->bk == ~(uintptr_t)p->fd; }

/* The chunk size limit that mallopt(M_MXFAST, bytes) sets, as glibc computes it. */
static inline size_t max_fast_for_request(size_t bytes)
{
    return bytes == 0 ? PRM_MINSIZE / 2 : (bytes + PRM_SIZE_SZ) & ~PRM_ALIGN_MASK;
}

#endif
