/* fuzz_core.c - the libFuzzer target over the C core in checked mode (the build Python
 * uses: PRM_RECOVERABLE, every bin link checked before it is followed).
 *
 * An input is a program of allocator operations, decoded byte by byte: malloc, calloc,
 * realloc, memalign, free, pattern writes and checks, prm_check, malloc_trim, mallopt,
 * and deliberate misuse: double and stale frees, frees of interior pointers, frees of
 * forged chunks outside our memory (on the stack, in a global, in another allocator's
 * block: the ownership map's refusals), and raw writes over chunk headers, bin links
 * and the bytes past a block. The contract:
 *
 *  - nothing ever crashes (libFuzzer reports a signal, ASan a bad access, UBSan UB);
 *  - an input without misuse gets no error report, a clean prm_check after every
 *    operation that asks for one, and every block's pattern intact (no overlap);
 *  - after misuse, errors are allowed (that is the point), crashes are not.
 *
 * An input whose last byte has its top bit set runs in hardened mode (the quarantine,
 * zero-size blocks, the canary), under the same contract.
 *
 * Each input starts on a fresh allocator (fuzz_reset.c). Built by `make fuzz` (long run)
 * and by tests/test_fuzz.py (a bounded run in CI), with clang's -fsanitize=fuzzer. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_reset.h"
#include "prm.h"

#define SLOTS 32

typedef struct block {
    unsigned char *mem;     /* NULL when the slot is empty */
    size_t size;            /* requested */
    unsigned char seed;     /* pattern byte */
    int freed;              /* mem is stale: freed (kept for misuse) */
} block;

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input;

static unsigned take8(input *in) { return in->at < in->size ? in->data[in->at++] : 0; }

static size_t take16(input *in) { return take8(in) | (size_t)take8(in) << 8; }

static uint64_t take64(input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)take8(in) << (8 * i);
    return v;
}

/* A request size spread over every class: tiny, fast, small, large, mmapped. */
static size_t take_size(input *in)
{
    unsigned cls = take8(in) % 8;
    size_t n = take16(in);
    switch (cls) {
    case 0: return n % 32;
    case 1: return n % 160;
    case 2: return n % 1024;
    case 3: return n % 8192;
    case 4: return n % 65536;
    case 5: return 128 * 1024 + n * 16;              /* around the mmap threshold */
    case 6: return n % 512;
    default: return (n % 4) == 0 ? (size_t)-1 - n : n;   /* absurd sizes, some */
    }
}

/* Is [p, p+n) memory the allocator holds right now (a heap segment or an mmapped
 * chunk's mapping)? The harness writes its misuse only there, so that a crash is always
 * the allocator's and never the harness's own write into unmapped memory. */
/* Inputs whose last byte has its top bit set run in hardened mode (M_HARDENED). */
static int hardened;

static int still_mapped(const void *p, size_t n)
{
    static prm_segment_info segments[256];
    static prm_chunk_info chunks[4096];
    uintptr_t a = (uintptr_t)p;
    long count = prm_walk_segments(segments, 256);
    for (long i = 0; i < count && i < 256; i++)
        if (a >= segments[i].start && a + n <= segments[i].end)
            return 1;
    if (hardened)   /* a quarantined mapped block's pages and every guard page trap */
        return 0;
    count = prm_walk_chunks(chunks, 4096);
    for (long i = 0; i < count && i < 4096; i++)
        if (chunks[i].kind == PRM_KIND_MMAPPED && a >= chunks[i].mapping &&
            a + n <= chunks[i].mapping + chunks[i].mapping_length)
            return 1;
    return 0;
}

/* The pattern covers a block's first and last EDGE bytes: where a neighbour that
 * overlaps it must show. Whole large blocks would make each input slow. */
#define EDGE 256

static inline int patterned(size_t i, size_t size) { return i < EDGE || i >= size - EDGE || size <= 2 * EDGE; }

static void fill(block *b)
{
    for (size_t i = 0; i < b->size; i = (i == EDGE && b->size > 2 * EDGE) ? b->size - EDGE : i + 1)
        b->mem[i] = (unsigned char)(b->seed + i * 31);
}

/* The pattern is intact: no other block overlaps this one. Only without misuse. */
static void verify(const block *b)
{
    for (size_t i = 0; i < b->size; i = (i == EDGE && b->size > 2 * EDGE) ? b->size - EDGE : i + 1)
        if (b->mem[i] != (unsigned char)(b->seed + i * 31))
            __builtin_trap();   /* two live blocks overlap, or data was lost */
}

/* An error report from the core: allowed only once misuse happened. */
static void expect_no_error(int misused)
{
    prm_error e;
    if (prm_take_error(&e) != PRM_OK && !misused)
        __builtin_trap();   /* a false positive: a clean program was reported */
}

static void check_heap(int misused)
{
    char why[256];
    if (prm_check(why, sizeof why) != PRM_OK && !misused)
        __builtin_trap();   /* the heap is inconsistent though nobody damaged it */
    expect_no_error(misused);
}

/* Self-test (PRM_FUZZ_SELFTEST set): header writes are not counted as misuse, so the
 * core's reports of them look like false positives and trap. Proves the checks bite. */
static int selftest;

/* free a live block, its pattern checked first while nothing was damaged. */
static void release(block *b, int misused)
{
    if (!misused)
        verify(b);
    prm_free(b->mem);
    expect_no_error(misused);
    b->freed = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    selftest = getenv("PRM_FUZZ_SELFTEST") != NULL;
    prm_fuzz_reset_init();
    return 0;
}

static unsigned char forged_global[64] __attribute__((aligned(16)));

/* A chunk header the input chooses (any size, any flag bits), in memory that is not the
 * allocator's: the stack, a global, or a block of the process's own malloc. Every
 * entry point must refuse the pointer without touching anything of ours: free and
 * realloc report it, malloc_usable_size answers 0. */
static void free_forged(input *in)
{
    unsigned char on_stack[64] __attribute__((aligned(16)));
    unsigned char *foreign = malloc(64);
    unsigned where = take8(in) % 3;
    unsigned char *area = where == 0 ? on_stack : where == 1 ? forged_global : foreign;
    if (area == NULL)
        return;
    memset(area, 0, 64);
    uint64_t prev_size = take64(in), size = take64(in);
    memcpy(area, &prev_size, 8);
    memcpy(area + 8, &size, 8);
    void *mem = area + 16;
    switch (take8(in) % 3) {
    case 0:
        if (prm_free(mem) == PRM_OK)
            __builtin_trap();   /* a chunk that is not ours was accepted */
        break;
    case 1:
        if (prm_realloc(mem, take8(in)) != NULL)
            __builtin_trap();
        break;
    default:
        if (prm_usable_size(mem) != 0)
            __builtin_trap();
        break;
    }
    free(foreign);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    block slots[SLOTS];
    memset(slots, 0, sizeof slots);
    input in = { data, size, 0 };
    int misused = 0;
    prm_fuzz_reset();
    hardened = size > 0 && (data[size - 1] & 0x80) != 0;
    if (hardened && prm_mallopt(PRM_M_HARDENED, 1) != 1)
        __builtin_trap();   /* refused on a fresh allocator */

    for (int steps = 0; in.at < in.size && steps < 256; steps++) {
        unsigned op = take8(&in) % 15;
        block *b = &slots[take8(&in) % SLOTS];
        int live = b->mem != NULL && !b->freed;
        switch (op) {
        case 0: case 1: {                              /* malloc */
            if (live)
                break;
            size_t n = take_size(&in);
            void *p = prm_malloc(n);
            expect_no_error(misused);
            if (p != NULL) {
                *b = (block){ p, n, (unsigned char)take8(&in), 0 };
                fill(b);
            }
            break;
        }
        case 2: {                                      /* calloc */
            if (live)
                break;
            size_t count = take8(&in), n = take_size(&in);
            unsigned char *p = prm_calloc(count, n);
            expect_no_error(misused);
            if (p != NULL) {
                for (size_t i = 0; !misused && i < count * n; i = (i == EDGE && count * n > 2 * EDGE) ? count * n - EDGE : i + 1)
                    if (p[i] != 0)
                        __builtin_trap();              /* calloc returned dirty memory */
                *b = (block){ p, count * n, (unsigned char)take8(&in), 0 };
                fill(b);
            }
            break;
        }
        case 3: {                                      /* memalign */
            if (live)
                break;
            size_t alignment = (size_t)1 << (take8(&in) % 14), n = take_size(&in);
            void *p = prm_memalign(alignment, n);
            expect_no_error(misused);
            if (p != NULL) {
                if ((uintptr_t)p % alignment != 0 && !misused)
                    __builtin_trap();
                *b = (block){ p, n, (unsigned char)take8(&in), 0 };
                fill(b);
            }
            break;
        }
        case 4: case 5:                                /* free */
            if (live)
                release(b, misused);
            break;
        case 6: {                                      /* realloc */
            if (!live)
                break;
            size_t n = take_size(&in);
            if (!misused)
                verify(b);
            unsigned char *p = prm_realloc(b->mem, n);
            expect_no_error(misused);
            if (n == 0) {
                b->freed = 1;
            } else if (p != NULL) {
                size_t kept = n < b->size ? n : b->size;
                for (size_t i = 0; !misused && i < kept; i++)
                    if (patterned(i, b->size) && p[i] != (unsigned char)(b->seed + i * 31))
                        __builtin_trap();              /* realloc lost data */
                *b = (block){ p, n, b->seed, 0 };
                fill(b);
            }
            break;
        }
        case 7:                                        /* prm_check */
            check_heap(misused);
            break;
        case 8:                                        /* malloc_trim */
            prm_malloc_trim(take16(&in));
            expect_no_error(misused);
            break;
        case 9:                                        /* mallopt */
            prm_mallopt(take8(&in) % 2 ? PRM_M_MXFAST : PRM_M_MMAP_THRESHOLD,
                        (int)(take16(&in) * 8));
            expect_no_error(misused);
            break;
        case 10:                                       /* misuse: free a stale pointer */
            if (b->mem == NULL || !b->freed)
                break;
            misused = 1;
            prm_free(b->mem);
            break;
        case 11:                                       /* misuse: free inside a block */
            if (!live || b->size < 48)
                break;
            misused = 1;
            prm_free(b->mem + 16 * (1 + take8(&in) % (b->size / 16 - 1)));
            break;
        case 12: {                                     /* misuse: raw write over a header */
            /* Only where memory surely stays mapped: a live heap block's own header
             * words, its bytes, and past its end into the next chunk's header. */
            if (!live)
                break;
            size_t span = b->size + 32;
            ptrdiff_t offset = (ptrdiff_t)(take16(&in) % span) - 16;
            offset &= ~(ptrdiff_t)7;
            uint64_t value = take64(&in);
            if (!still_mapped(b->mem + offset, 8))
                break;
            misused = !selftest;
            memcpy(b->mem + offset, &value, take8(&in) % 2 ? 8 : 1);
            break;
        }
        case 13: {                                     /* misuse: write after free */
            /* Into a freed block's links, if its memory is still the allocator's. */
            if (!live || b->size < 16)
                break;
            release(b, misused);
            uint64_t value = take64(&in);
            unsigned char *link = b->mem + 8 * (take8(&in) % 2);
            if (!still_mapped(link, 8))
                break;
            misused = 1;
            memcpy(link, &value, 8);
            break;
        }
        case 14:                                       /* misuse: free a forged chunk */
            misused = 1;
            free_forged(&in);
            break;
        }
    }
    if (!misused) {
        for (int i = 0; i < SLOTS; i++)
            if (slots[i].mem != NULL && !slots[i].freed)
                verify(&slots[i]);
        check_heap(0);
    }
    return 0;
}
