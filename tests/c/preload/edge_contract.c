/* edge_contract.c - named checks of the glibc malloc contract, for every function the
 * preload library exports: malloc, free, calloc, realloc, reallocarray, memalign,
 * posix_memalign, aligned_alloc, valloc, pvalloc, malloc_usable_size, mallopt,
 * malloc_trim, mallinfo2, mallinfo, malloc_stats, malloc_info and __libc_malloc, __libc_free,
 * __libc_calloc, __libc_realloc, __libc_memalign: zero sizes, alignment, ENOMEM near
 * SIZE_MAX and on overflow, EINVAL for bad alignments, errno kept by free, usable
 * sizes, page rounding, mallopt/malloc_trim/mallinfo2/malloc_stats/malloc_info results,
 * and that all of them come from one allocator and interoperate.
 *
 * The checks follow glibc's contract (issues 4 and 12); where glibc 2.36 itself differs
 * from today's glibc and C17 (tests/test_preload_programs.py lists these in
 * GLIBC_DEVIATIONS and expects them to fail when it runs this program on plain glibc):
 *   aligned_alloc_rejects_bad_alignment  EINVAL for an alignment that is not a power of
 *                                        two, as C17 and glibc >= 2.38 say (glibc 2.36's
 *                                        aligned_alloc is its memalign, which rounds up)
 *
 * Every allocator call goes through a volatile function pointer (`lib.malloc(...)`):
 * the compiler knows malloc's contract (results 16-byte aligned, memalign's aligned to
 * its argument, calloc's memory zero, free leaves errno alone, distinct results never
 * equal) and would fold away the very comparisons made here.
 *
 * usage: edge_contract [--list] [name...]   (no names: run every check, in order)
 * prints "ok <name>" or "FAIL <name> file:line: condition: details" per check (stdout,
 * flushed per check); exits 0 if all passed, 1 otherwise. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"

/* glibc exports these; a preload library must too (programs and libraries call them). */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t nmemb, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

/* mallinfo is deprecated in glibc's header, and still called by programs. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static struct {
    void *(*volatile malloc)(size_t);
    void (*volatile free)(void *);
    void *(*volatile calloc)(size_t, size_t);
    void *(*volatile realloc)(void *, size_t);
    void *(*volatile reallocarray)(void *, size_t, size_t);
    void *(*volatile memalign)(size_t, size_t);
    int (*volatile posix_memalign)(void **, size_t, size_t);
    void *(*volatile aligned_alloc)(size_t, size_t);
    void *(*volatile valloc)(size_t);
    void *(*volatile pvalloc)(size_t);
    size_t (*volatile malloc_usable_size)(void *);
    int (*volatile mallopt)(int, int);
    int (*volatile malloc_trim)(size_t);
    struct mallinfo2 (*volatile mallinfo2)(void);
    void (*volatile malloc_stats)(void);
    int (*volatile malloc_info)(int, FILE *);
    void *(*volatile libc_malloc)(size_t);
    void (*volatile libc_free)(void *);
    void *(*volatile libc_calloc)(size_t, size_t);
    void *(*volatile libc_realloc)(void *, size_t);
    void *(*volatile libc_memalign)(size_t, size_t);
    struct mallinfo (*volatile mallinfo)(void);
} lib = {
    malloc, free, calloc, realloc, reallocarray, memalign, posix_memalign, aligned_alloc,
    valloc, pvalloc, malloc_usable_size, mallopt, malloc_trim, mallinfo2, malloc_stats,
    malloc_info, __libc_malloc, __libc_free, __libc_calloc, __libc_realloc, __libc_memalign,
    mallinfo,
};
#pragma GCC diagnostic pop

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define SENTINEL_ERRNO 4242

static size_t page;
/* The sizes every allocation function must refuse with ENOMEM. */
static const size_t huge_sizes[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1 };
#define NHUGE (sizeof huge_sizes / sizeof huge_sizes[0])

/* ---- reporting ------------------------------------------------------------------------- */

static const char *check_name;
static bool check_failed;

__attribute__((format(printf, 4, 5)))
static void check_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    printf("FAIL %s %s:%d: %s", check_name, file, line, cond);
    if (strcmp(fmt, " ") != 0) {
        va_list ap;
        va_start(ap, fmt);
        putchar(':');
        vprintf(fmt, ap);
        va_end(ap);
    }
    putchar('\n');
    fflush(stdout);
    check_failed = true;
}

/* CHECK(cond) or CHECK(cond, "format", args...): on failure report and leave the check
 * (blocks it holds are leaked on purpose: the heap may be in doubt). */
#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            check_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                      \
            return;                                                                      \
        }                                                                                \
    } while (0)

/* A block's first bytes say its id; check_pattern says where it went wrong. */
#define CHECK_PATTERN(p, n, id)                                                          \
    do {                                                                                 \
        long bad_ = pattern_check((const unsigned char *)(p), 0, (n), (id));             \
        CHECK(bad_ < 0, "block %p of %zu bytes: byte %ld changed", (void *)(p),          \
              (size_t)(n), bad_);                                                        \
    } while (0)

static size_t in_use(void)
{
    struct mallinfo2 mi = lib.mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

/* ---- zero sizes, alignment, realloc ------------------------------------------------------ */

static void check_malloc_zero_unique(void)
{
    void *a = lib.malloc(0), *b = lib.malloc(0);
    CHECK(a != NULL && b != NULL, "malloc(0) = %p, %p", a, b);
    CHECK(addr_of(a) != addr_of(b), "two malloc(0) both returned %p", a);
    CHECK(addr_of(a) % 16 == 0 && addr_of(b) % 16 == 0, "%p %p", a, b);
    lib.free(a);
    lib.free(b);
}

static void check_malloc_alignment_1_to_4096(void)
{
    static unsigned char *blocks[4097];
    for (size_t n = 1; n <= 4096; n++) {
        blocks[n] = lib.malloc(n);
        CHECK(blocks[n] != NULL, "malloc(%zu)", n);
        CHECK(addr_of(blocks[n]) % 16 == 0, "malloc(%zu) = %p", n, (void *)blocks[n]);
        pattern_fill(blocks[n], 0, n, n);
    }
    for (size_t n = 1; n <= 4096; n++) {
        CHECK_PATTERN(blocks[n], n, n);         /* all live at once: no two overlap */
        lib.free(blocks[n]);
    }
}

static void check_calloc_alignment_and_zero(void)
{
    for (size_t n = 1; n <= 4096; n += 3) {
        unsigned char *p = lib.calloc(n, 1), *q = lib.calloc(1, n), *r = lib.calloc(n / 8 + 1, 8);
        CHECK(p != NULL && q != NULL && r != NULL, "calloc of %zu bytes", n);
        CHECK(addr_of(p) % 16 == 0 && addr_of(q) % 16 == 0 && addr_of(r) % 16 == 0,
              "calloc of %zu bytes: %p %p %p", n, (void *)p, (void *)q, (void *)r);
        for (size_t i = 0; i < n; i++)
            CHECK(p[i] == 0 && q[i] == 0 && r[i] == 0, "calloc of %zu bytes: byte %zu", n, i);
        memset(p, 0xa5, n);
        memset(q, 0xa5, n);
        lib.free(p);
        lib.free(q);
        lib.free(r);
    }
}

static void check_calloc_zeroes_reused_memory(void)
{
    static const size_t sizes[] = { 16, 24, 100, 1000, 1032, 5000, 70000, 100000, 200000, MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *dirty[8];
        for (int k = 0; k < 8; k++) {
            dirty[k] = lib.malloc(n);
            CHECK(dirty[k] != NULL, "malloc(%zu)", n);
            memset(dirty[k], 0xa5, lib.malloc_usable_size(dirty[k]));
        }
        for (int k = 0; k < 8; k++)
            lib.free(dirty[k]);
        for (int k = 0; k < 8; k++) {
            unsigned char *z = k % 2 ? lib.calloc(1, n) : lib.calloc(n / 8, 8);
            CHECK(z != NULL, "calloc of %zu bytes", n);
            size_t m = k % 2 ? n : n / 8 * 8;
            for (size_t j = 0; j < m; j++)
                CHECK(z[j] == 0, "calloc of %zu bytes after free of dirty blocks: byte %zu is %#x",
                      m, j, z[j]);
            dirty[k] = z;
        }
        for (int k = 0; k < 8; k++)
            lib.free(dirty[k]);
    }
}

static void check_realloc_alignment(void)
{
    unsigned char *p = lib.malloc(1);
    CHECK(p != NULL);
    pattern_fill(p, 0, 1, 7);
    size_t n = 1;
    for (size_t m = 2; m <= 4096; m += 13) {            /* grow in small steps */
        p = lib.realloc(p, m);
        CHECK(p != NULL && addr_of(p) % 16 == 0, "realloc to %zu = %p", m, (void *)p);
        CHECK_PATTERN(p, n, 7);
        pattern_fill(p, n, m, 7);
        n = m;
    }
    for (size_t m = n; m >= 1; m = m * 3 / 4) {          /* and shrink back */
        p = lib.realloc(p, m);
        CHECK(p != NULL && addr_of(p) % 16 == 0, "realloc to %zu = %p", m, (void *)p);
        CHECK_PATTERN(p, m, 7);
        n = m;
        if (m == 1)
            break;
    }
    lib.free(p);
}

static void check_realloc_preserves_contents(void)
{
    static const size_t steps[] = { 10, 100, 10000, 200000, 5 * MiB, 300000, 100, 1, 2 * MiB };
    unsigned char *p = NULL;
    size_t n = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t m = steps[i];
        p = lib.realloc(p, m);
        CHECK(p != NULL && addr_of(p) % 16 == 0, "realloc(%zu -> %zu) = %p", n, m, (void *)p);
        CHECK(lib.malloc_usable_size(p) >= m, "realloc(%zu -> %zu)", n, m);
        CHECK_PATTERN(p, n < m ? n : m, 0x5eed);
        pattern_fill(p, 0, m, 0x5eed);
        n = m;
    }
    lib.free(p);
}

static void check_realloc_zero_frees(void)
{
    unsigned char *small = lib.malloc(100);
    CHECK(small != NULL);
    CHECK(lib.realloc(small, 0) == NULL, "realloc(p, 0) of a 100-byte block did not return NULL");
    /* A 64 MiB block makes the release visible in mallinfo2 whatever the mmap threshold. */
    size_t before = in_use();
    unsigned char *big = lib.malloc(64 * MiB);
    CHECK(big != NULL);
    size_t during = in_use();
    CHECK(during >= before + 64 * MiB, "mallinfo2 in use (uordblks + hblkhd): %zu then %zu",
          before, during);
    CHECK(lib.realloc(big, 0) == NULL, "realloc(p, 0) of a 64 MiB block did not return NULL");
    size_t after = in_use();
    CHECK(after + 64 * MiB <= during, "realloc(p, 0) did not free: in use %zu, then %zu",
          during, after);
}

static void check_realloc_null_mallocs(void)
{
    unsigned char *p = lib.realloc(NULL, 100);
    CHECK(p != NULL && addr_of(p) % 16 == 0, "realloc(NULL, 100) = %p", (void *)p);
    CHECK(lib.malloc_usable_size(p) >= 100);
    pattern_fill(p, 0, 100, 3);
    unsigned char *q = lib.realloc(NULL, 0);
    CHECK(q != NULL, "realloc(NULL, 0) must be malloc(0)");
    CHECK(addr_of(q) != addr_of(p));
    unsigned char *r = lib.realloc(NULL, 300 * KiB);
    CHECK(r != NULL && addr_of(r) % 16 == 0, "realloc(NULL, 300 KiB) = %p", (void *)r);
    memset(r, 1, 300 * KiB);
    CHECK_PATTERN(p, 100, 3);
    lib.free(p);
    lib.free(q);
    lib.free(r);
}

/* ---- ENOMEM near SIZE_MAX and on overflow ------------------------------------------------- */

#define CHECK_ENOMEM(call, what, size)                                                   \
    do {                                                                                 \
        errno = 0;                                                                       \
        void *r_ = (call);                                                               \
        int e_ = errno;                                                                  \
        CHECK(r_ == NULL && e_ == ENOMEM, "%s with n = %#zx returned %p, errno %d (%s)", \
              (what), (size_t)(size), r_, e_, strerror(e_));                             \
    } while (0)

static void check_enomem_malloc(void)
{
    for (size_t i = 0; i < NHUGE; i++)
        CHECK_ENOMEM(lib.malloc(huge_sizes[i]), "malloc", huge_sizes[i]);
}

static void check_enomem_calloc(void)
{
    for (size_t i = 0; i < NHUGE; i++) {
        CHECK_ENOMEM(lib.calloc(1, huge_sizes[i]), "calloc(1, n)", huge_sizes[i]);
        CHECK_ENOMEM(lib.calloc(huge_sizes[i], 1), "calloc(n, 1)", huge_sizes[i]);
    }
}

static void check_enomem_realloc(void)
{
    unsigned char *p = lib.malloc(100);
    CHECK(p != NULL);
    pattern_fill(p, 0, 100, 11);
    for (size_t i = 0; i < NHUGE; i++) {
        CHECK_ENOMEM(lib.realloc(p, huge_sizes[i]), "realloc(p, n)", huge_sizes[i]);
        CHECK_ENOMEM(lib.realloc(NULL, huge_sizes[i]), "realloc(NULL, n)", huge_sizes[i]);
    }
    CHECK_PATTERN(p, 100, 11);                  /* a failed realloc leaves the block alone */
    CHECK(lib.malloc_usable_size(p) >= 100);
    lib.free(p);
}

static void check_enomem_reallocarray(void)
{
    unsigned char *p = lib.malloc(100);
    CHECK(p != NULL);
    pattern_fill(p, 0, 100, 12);
    for (size_t i = 0; i < NHUGE; i++) {
        CHECK_ENOMEM(lib.reallocarray(p, 1, huge_sizes[i]), "reallocarray(p, 1, n)", huge_sizes[i]);
        CHECK_ENOMEM(lib.reallocarray(p, huge_sizes[i], 1), "reallocarray(p, n, 1)", huge_sizes[i]);
        CHECK_ENOMEM(lib.reallocarray(NULL, 1, huge_sizes[i]), "reallocarray(NULL, 1, n)",
                     huge_sizes[i]);
    }
    CHECK_PATTERN(p, 100, 12);
    lib.free(p);
}

static void check_enomem_memalign(void)
{
    static const size_t aligns[] = { 16, 64, 4096 };
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < NHUGE; i++)
            CHECK_ENOMEM(lib.memalign(aligns[a], huge_sizes[i]), "memalign", huge_sizes[i]);
}

static void check_enomem_posix_memalign(void)
{
    static const size_t aligns[] = { 16, 64, 4096 };
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < NHUGE; i++) {
            void *out = (void *)&out;           /* a sentinel that must survive */
            int rc = lib.posix_memalign(&out, aligns[a], huge_sizes[i]);
            CHECK(rc == ENOMEM, "posix_memalign(%zu, %#zx) returned %d", aligns[a],
                  huge_sizes[i], rc);
            CHECK(out == (void *)&out, "posix_memalign changed *memptr to %p on failure", out);
        }
}

static void check_enomem_aligned_alloc(void)
{
    static const size_t aligns[] = { 16, 64, 4096 };
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < NHUGE; i++) {
            size_t n = huge_sizes[i] & ~(aligns[a] - 1);    /* a multiple, as C11 wants */
            CHECK_ENOMEM(lib.aligned_alloc(aligns[a], n), "aligned_alloc", n);
        }
}

static void check_enomem_valloc(void)
{
    for (size_t i = 0; i < NHUGE; i++)
        CHECK_ENOMEM(lib.valloc(huge_sizes[i]), "valloc", huge_sizes[i]);
}

static void check_enomem_pvalloc(void)
{
    for (size_t i = 0; i < NHUGE; i++)
        CHECK_ENOMEM(lib.pvalloc(huge_sizes[i]), "pvalloc", huge_sizes[i]);
}

static void check_calloc_overflow(void)
{
    const size_t half = SIZE_MAX / 2, big = (size_t)1 << 32;
    CHECK_ENOMEM(lib.calloc(half, 3), "calloc(SIZE_MAX/2, 3)", half);
    CHECK_ENOMEM(lib.calloc(3, half), "calloc(3, SIZE_MAX/2)", half);
    CHECK_ENOMEM(lib.calloc(big, big), "calloc(2^32, 2^32)", big);
    CHECK_ENOMEM(lib.calloc(big + 1, big - 1), "calloc(2^32+1, 2^32-1)", big);
    CHECK_ENOMEM(lib.calloc(SIZE_MAX, SIZE_MAX), "calloc(SIZE_MAX, SIZE_MAX)", SIZE_MAX);
    CHECK_ENOMEM(lib.calloc((size_t)PTRDIFF_MAX / 2 + 1, 2), "calloc(PTRDIFF_MAX/2+1, 2)",
                 (size_t)PTRDIFF_MAX / 2 + 1);
}

static void check_reallocarray_overflow(void)
{
    const size_t big = (size_t)1 << 33;
    CHECK_ENOMEM(lib.reallocarray(NULL, big, big), "reallocarray(NULL, 2^33, 2^33)", big);
    unsigned char *p = lib.malloc(100);
    CHECK(p != NULL);
    pattern_fill(p, 0, 100, 13);
    CHECK_ENOMEM(lib.reallocarray(p, SIZE_MAX / 2, 3), "reallocarray(p, SIZE_MAX/2, 3)",
                 SIZE_MAX / 2);
    CHECK_ENOMEM(lib.reallocarray(p, big, big), "reallocarray(p, 2^33, 2^33)", big);
    CHECK_PATTERN(p, 100, 13);
    unsigned char *q = lib.reallocarray(p, 25, 40);    /* and an ordinary one works */
    CHECK(q != NULL && lib.malloc_usable_size(q) >= 1000, "reallocarray(p, 25, 40) = %p", (void *)q);
    CHECK_PATTERN(q, 100, 13);
    lib.free(q);
}

/* ---- alignment arguments -------------------------------------------------------------------- */

static void check_aligned_results(void)
{
    for (size_t a = 1; a <= MiB; a *= 2) {
        size_t want = a < 16 ? 16 : a;
        static const size_t sizes[] = { 1, 100, 5000, 200000 };
        for (size_t i = 0; i < 4; i++) {
            size_t n = sizes[i];
            unsigned char *m = lib.memalign(a, n);
            CHECK(m != NULL && addr_of(m) % want == 0, "memalign(%zu, %zu) = %p", a, n, (void *)m);
            CHECK(lib.malloc_usable_size(m) >= n, "memalign(%zu, %zu)", a, n);
            void *pm = NULL;
            size_t pa = a < sizeof(void *) ? sizeof(void *) : a;
            int rc = lib.posix_memalign(&pm, pa, n);
            CHECK(rc == 0 && addr_of(pm) % (pa < 16 ? 16 : pa) == 0,
                  "posix_memalign(%zu, %zu) = %d, %p", pa, n, rc, pm);
            CHECK(lib.malloc_usable_size(pm) >= n, "posix_memalign(%zu, %zu)", pa, n);
            size_t an = (n + a - 1) / a * a;
            unsigned char *aa = lib.aligned_alloc(a, an);
            CHECK(aa != NULL && addr_of(aa) % want == 0, "aligned_alloc(%zu, %zu) = %p", a, an,
                  (void *)aa);
            CHECK(lib.malloc_usable_size(aa) >= an, "aligned_alloc(%zu, %zu)", a, an);
            unsigned char *lm = lib.libc_memalign(a, n);
            CHECK(lm != NULL && addr_of(lm) % want == 0, "__libc_memalign(%zu, %zu) = %p", a, n,
                  (void *)lm);
            pattern_fill(m, 0, n, 1);
            pattern_fill(pm, 0, n, 2);
            pattern_fill(aa, 0, an, 3);
            pattern_fill(lm, 0, n, 4);
            CHECK_PATTERN(m, n, 1);
            CHECK_PATTERN(pm, n, 2);
            CHECK_PATTERN(aa, an, 3);
            CHECK_PATTERN(lm, n, 4);
            lib.free(m);
            lib.free(pm);
            lib.free(aa);
            lib.free(lm);
        }
    }
}

static const size_t bad_alignments[] = { 24, 48, 96, 3 * 4096, 12, 6 };

/* glibc's memalign takes an alignment that is not a power of two and rounds it up to
 * the next one; only one beyond SIZE_MAX / 2 + 1 is EINVAL. */
static void check_memalign_rounds_bad_alignment_up(void)
{
    for (size_t i = 0; i < sizeof bad_alignments / sizeof bad_alignments[0]; i++) {
        size_t a = bad_alignments[i], rounded = 1;
        while (rounded < a)
            rounded <<= 1;
        unsigned char *p = lib.memalign(a, 100);
        CHECK(p != NULL && addr_of(p) % rounded == 0 && addr_of(p) % 16 == 0,
              "memalign(%zu, 100) = %p, not aligned to %zu", a, (void *)p, rounded);
        pattern_fill(p, 0, 100, a);
        CHECK(lib.malloc_usable_size(p) >= 100);
        CHECK_PATTERN(p, 100, a);
        lib.free(p);
    }
    void *p = lib.memalign(0, 100);             /* up to 16: plain malloc */
    CHECK(p != NULL && addr_of(p) % 16 == 0, "memalign(0, 100) = %p", p);
    lib.free(p);
    errno = 0;
    p = lib.memalign(SIZE_MAX / 2 + 2, 100);
    CHECK(p == NULL && errno == EINVAL, "memalign(SIZE_MAX / 2 + 2, 100) = %p, errno %d", p, errno);
}

static void check_aligned_alloc_rejects_bad_alignment(void)
{
    for (size_t i = 0; i < sizeof bad_alignments / sizeof bad_alignments[0]; i++) {
        errno = 0;
        void *p = lib.aligned_alloc(bad_alignments[i], bad_alignments[i] * 4);
        int e = errno;
        CHECK(p == NULL && e == EINVAL, "aligned_alloc(%zu, %zu) = %p, errno %d (%s)",
              bad_alignments[i], bad_alignments[i] * 4, p, e, strerror(e));
    }
}

static void check_posix_memalign_rejects_bad_alignment(void)
{
    /* Not a power of two, or not a multiple of sizeof(void *), or zero. */
    static const size_t bad[] = { 24, 48, 96, 3 * 4096, 0, 1, 2, 4, sizeof(void *) / 2,
                                  3 * sizeof(void *), sizeof(void *) + 1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)&out;
        errno = SENTINEL_ERRNO;
        int rc = lib.posix_memalign(&out, bad[i], 100);
        CHECK(rc == EINVAL, "posix_memalign(%zu, 100) returned %d", bad[i], rc);
        CHECK(out == (void *)&out, "posix_memalign(%zu, 100) changed *memptr to %p", bad[i], out);
    }
}

static void check_valloc_page_aligned(void)
{
    const size_t sizes[] = { 1, 100, page - 1, page, page + 1, 100000, MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = lib.valloc(sizes[i]);
        CHECK(p != NULL && addr_of(p) % page == 0, "valloc(%zu) = %p", sizes[i], (void *)p);
        CHECK(lib.malloc_usable_size(p) >= sizes[i], "valloc(%zu)", sizes[i]);
        memset(p, 0x77, sizes[i]);
        lib.free(p);
    }
}

static void check_pvalloc_rounds_to_pages(void)
{
    const size_t sizes[] = { 1, 100, page - 1, page, page + 1, 3 * page - 5, 100000, MiB + 1 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], rounded = (n + page - 1) / page * page;
        unsigned char *p = lib.pvalloc(n);
        CHECK(p != NULL && addr_of(p) % page == 0, "pvalloc(%zu) = %p", n, (void *)p);
        size_t usable = lib.malloc_usable_size(p);
        CHECK(usable >= rounded, "pvalloc(%zu): usable %zu < %zu (whole pages)", n, usable, rounded);
        memset(p, 0x66, rounded);               /* every byte of the rounded size is ours */
        lib.free(p);
    }
}

/* ---- free, errno, usable size ------------------------------------------------------------------ */

#define FREE_KEEPS_ERRNO(p, what)                                                        \
    do {                                                                                 \
        errno = SENTINEL_ERRNO;                                                          \
        lib.free(p);                                                                     \
        int e_ = errno;                                                                  \
        CHECK(e_ == SENTINEL_ERRNO, "free of %s changed errno to %d (%s)", (what), e_,    \
              strerror(e_));                                                             \
    } while (0)

static void check_free_keeps_errno(void)
{
    FREE_KEEPS_ERRNO(NULL, "NULL");
    FREE_KEEPS_ERRNO(lib.malloc(32), "a small block");
    FREE_KEEPS_ERRNO(lib.malloc(2000), "a 2000-byte block");
    FREE_KEEPS_ERRNO(lib.malloc(100 * KiB), "a 100 KiB block");
    FREE_KEEPS_ERRNO(lib.malloc(64 * MiB), "a 64 MiB (mmapped) block");
    FREE_KEEPS_ERRNO(lib.calloc(10, 10), "a calloc block");
    FREE_KEEPS_ERRNO(lib.memalign(4096, 10000), "a memalign block");
    FREE_KEEPS_ERRNO(lib.valloc(3 * page), "a valloc block");
    /* Frees that consolidate and trim: 40 blocks of 60 KiB, freed top-down, give the
     * top chunk well over the trim threshold, so some free moves the break down. */
    void *blocks[40];
    for (int i = 0; i < 40; i++) {
        blocks[i] = lib.malloc(60 * KiB);
        CHECK(blocks[i] != NULL);
    }
    for (int i = 39; i >= 0; i--)
        FREE_KEEPS_ERRNO(blocks[i], "one of 40 60 KiB blocks (consolidation, trimming)");
    /* Many small frees: fast bins, tcache, and their consolidation. */
    void *small[500];
    for (int i = 0; i < 500; i++) {
        small[i] = lib.malloc((size_t)(i % 60) * 8 + 1);
        CHECK(small[i] != NULL);
    }
    for (int i = 0; i < 500; i++)
        FREE_KEEPS_ERRNO(small[i], "one of 500 small blocks");
    FREE_KEEPS_ERRNO(lib.malloc(70 * KiB), "a 70 KiB block (fast bin consolidation)");
    errno = SENTINEL_ERRNO;
    lib.libc_free(lib.malloc(50));
    CHECK(errno == SENTINEL_ERRNO, "__libc_free changed errno to %d", errno);
}

static void check_usable_size_covers_request(void)
{
    CHECK(lib.malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu",
          lib.malloc_usable_size(NULL));
    for (size_t n = 0; n <= 300 * KiB; n = n < 64 ? n + 1 : n * 5 / 4) {
        unsigned char *a = lib.malloc(n), *b = lib.malloc(n);
        CHECK(a != NULL && b != NULL, "malloc(%zu)", n);
        size_t ua = lib.malloc_usable_size(a), ub = lib.malloc_usable_size(b);
        CHECK(ua >= n && ub >= n, "malloc(%zu): usable %zu and %zu", n, ua, ub);
        /* The whole usable size is the caller's: writing it must not touch a neighbour. */
        pattern_fill(b, 0, ub, 0xb0b);
        memset(a, 0xee, ua);
        CHECK_PATTERN(b, ub, 0xb0b);
        pattern_fill(a, 0, ua, 0xa0a);
        memset(b, 0xdd, ub);
        CHECK_PATTERN(a, ua, 0xa0a);
        lib.free(a);
        lib.free(b);
    }
}

/* ---- mallopt, malloc_trim, mallinfo2, malloc_stats, malloc_info ----------------------------------- */

static void check_mallopt_known_params(void)
{
    CHECK(lib.mallopt(M_MMAP_THRESHOLD, 256 * KiB) == 1, "M_MMAP_THRESHOLD 256 KiB");
    CHECK(lib.mallopt(M_MMAP_THRESHOLD, 128 * KiB) == 1, "M_MMAP_THRESHOLD 128 KiB");
    CHECK(lib.mallopt(M_TRIM_THRESHOLD, 256 * KiB) == 1, "M_TRIM_THRESHOLD");
    CHECK(lib.mallopt(M_TRIM_THRESHOLD, 128 * KiB) == 1, "M_TRIM_THRESHOLD");
    CHECK(lib.mallopt(M_TOP_PAD, 64 * KiB) == 1, "M_TOP_PAD");
    CHECK(lib.mallopt(M_TOP_PAD, 128 * KiB) == 1, "M_TOP_PAD");
    CHECK(lib.mallopt(M_MMAP_MAX, 1000) == 1, "M_MMAP_MAX");
    CHECK(lib.mallopt(M_MMAP_MAX, 65536) == 1, "M_MMAP_MAX");
    CHECK(lib.mallopt(M_MXFAST, 64) == 1, "M_MXFAST 64");
    CHECK(lib.mallopt(M_MXFAST, 128) == 1, "M_MXFAST 128");
    CHECK(lib.mallopt(M_PERTURB, 0) == 1, "M_PERTURB 0");
    CHECK(lib.mallopt(M_ARENA_TEST, 8) == 1, "M_ARENA_TEST");
    void *p = lib.malloc(1000);                 /* and the allocator still works */
    CHECK(p != NULL);
    lib.free(p);
}

static void check_mallopt_unknown_params_accepted(void)
{
    /* glibc returns 1 for parameters it does not know (and for its UNUSED ones). */
    static const int params[] = { M_NLBLKS, M_GRAIN, M_KEEP, 12345, -100 };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        int rc = lib.mallopt(params[i], 1);
        CHECK(rc == 1, "mallopt(%d, 1) returned %d", params[i], rc);
    }
    void *p = lib.malloc(1000);
    CHECK(p != NULL);
    lib.free(p);
}

static void check_mallopt_mmap_threshold_takes_effect(void)
{
    CHECK(lib.mallopt(M_TRIM_THRESHOLD, 128 * KiB) == 1);
    CHECK(lib.mallopt(M_MMAP_THRESHOLD, 64 * KiB) == 1);
    lib.malloc_trim(0);                         /* so the top chunk cannot hold 1 MiB */
    size_t before = lib.mallinfo2().hblkhd;
    void *p = lib.malloc(MiB);
    size_t after = lib.mallinfo2().hblkhd;
    CHECK(p != NULL && after >= before + MiB,
          "threshold 64 KiB: malloc(1 MiB) not mmapped (hblkhd %zu -> %zu)", before, after);
    lib.free(p);
    CHECK(lib.mallopt(M_MMAP_THRESHOLD, 4 * MiB) == 1);
    before = lib.mallinfo2().hblkhd;
    p = lib.malloc(MiB);
    after = lib.mallinfo2().hblkhd;
    CHECK(p != NULL && after == before,
          "threshold 4 MiB: malloc(1 MiB) mmapped (hblkhd %zu -> %zu)", before, after);
    lib.free(p);
    CHECK(lib.mallopt(M_MMAP_THRESHOLD, 128 * KiB) == 1);
    lib.malloc_trim(0);
}

static void check_malloc_trim_returns_0_or_1(void)
{
    int a = lib.malloc_trim(0);
    int b = lib.malloc_trim(MiB);
    void *p = lib.malloc(100);
    int c = lib.malloc_trim(0);
    CHECK((a == 0 || a == 1) && (b == 0 || b == 1) && (c == 0 || c == 1),
          "malloc_trim returned %d, %d, %d", a, b, c);
    lib.free(p);
}

static void check_malloc_trim_releases_free_pages(void)
{
    /* The seeds' memory hole: 64 blocks of 60 KiB below a live pin; once they are freed
     * they make one large free chunk that the top cannot absorb. malloc_trim gives its
     * pages back (MADV_DONTNEED) and says so. */
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = lib.malloc(60 * KiB);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 0x42, 60 * KiB);
    }
    void *pin = lib.malloc(100);
    CHECK(pin != NULL);
    for (int i = 0; i < 64; i++)
        lib.free(blocks[i]);
    int rc = lib.malloc_trim(0);
    CHECK(rc == 1, "malloc_trim(0) with ~3.75 MiB free below a live block returned %d", rc);
    lib.free(pin);
}

static void check_mallinfo2_sane(void)
{
    enum { N = 200 };
    static void *blocks[N];
    struct mallinfo2 before = lib.mallinfo2();
    for (int i = 0; i < N; i++) {
        blocks[i] = lib.malloc(1000);
        CHECK(blocks[i] != NULL);
    }
    struct mallinfo2 mid = lib.mallinfo2();
    CHECK(mid.arena > 0, "arena %zu after %d allocations", mid.arena, N);
    CHECK(mid.uordblks >= before.uordblks + N * 1000 * 3 / 4,
          "uordblks %zu -> %zu after %d x 1000 bytes", before.uordblks, mid.uordblks, N);
    CHECK(mid.uordblks <= mid.arena && mid.fordblks <= mid.arena,
          "arena %zu, uordblks %zu, fordblks %zu", mid.arena, mid.uordblks, mid.fordblks);
    for (int i = 0; i < N; i++)
        lib.free(blocks[i]);
    struct mallinfo2 after = lib.mallinfo2();
    CHECK(after.uordblks < mid.uordblks, "uordblks %zu -> %zu after freeing %d blocks",
          mid.uordblks, after.uordblks, N);
    void *big = lib.malloc(64 * MiB);
    CHECK(big != NULL);
    struct mallinfo2 mapped = lib.mallinfo2();
    CHECK(mapped.hblkhd >= after.hblkhd + 64 * MiB && mapped.hblks >= after.hblks + 1,
          "a 64 MiB block: hblkhd %zu -> %zu, hblks %zu -> %zu", after.hblkhd, mapped.hblkhd,
          after.hblks, mapped.hblks);
    lib.free(big);
    struct mallinfo2 unmapped = lib.mallinfo2();
    CHECK(unmapped.hblkhd + 64 * MiB <= mapped.hblkhd, "hblkhd %zu after free, %zu before",
          unmapped.hblkhd, mapped.hblkhd);
}

/* Send stderr to an unlinked temporary file: its descriptor (the old stderr's in
 * *saved), or -1. restore_stderr undoes it. */
static int capture_stderr(int *saved)
{
    char path[] = "/tmp/edge_contract_stderr_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    unlink(path);
    fflush(stderr);
    *saved = dup(2);
    if (*saved < 0 || dup2(fd, 2) != 2) {
        close(fd);
        return -1;
    }
    return fd;
}

static void restore_stderr(int saved)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
}

static void check_malloc_stats_writes(void)
{
    int saved, fd = capture_stderr(&saved);
    CHECK(fd >= 0, "stderr to a temporary file: %s", strerror(errno));
    void *p = lib.malloc(1000);
    lib.malloc_stats();
    restore_stderr(saved);
    lib.free(p);
    struct stat st;
    CHECK(fstat(fd, &st) == 0);
    close(fd);
    CHECK(st.st_size > 0, "malloc_stats wrote nothing to stderr");
}

static void check_malloc_info_xml(void)
{
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile: %s", strerror(errno));
    void *p = lib.malloc(1000);
    int rc = lib.malloc_info(0, f);
    lib.free(p);
    CHECK(rc == 0, "malloc_info(0, f) returned %d", rc);
    CHECK(fflush(f) == 0 && fseek(f, 0, SEEK_SET) == 0);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    CHECK(strncmp(text, "<malloc", 7) == 0, "malloc_info output starts with \"%.40s\"", text);
    CHECK(n < sizeof text - 1 ? strstr(text, "</malloc>") != NULL : true,
          "malloc_info output (%zu bytes) has no </malloc>", n);
}

/* Limit this (child) process's address space to what it maps now plus `margin`. */
static bool limit_address_space(size_t margin)
{
    char statm[128] = "";
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, statm, sizeof statm - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return false;
    statm[n] = '\0';
    rlim_t limit = (rlim_t)strtoull(statm, NULL, 10) * (rlim_t)page + margin;
    struct rlimit rl = { limit, limit };
    return setrlimit(RLIMIT_AS, &rl) == 0;
}

enum { EXHAUST_OK, EXHAUST_NO_LIMIT, EXHAUST_NEVER_FAILED, EXHAUST_BAD_ERRNO, EXHAUST_BAD_RESULT };

/* In a child limited to 64 MiB more address space: allocate with `call` (0 malloc,
 * 1 calloc, 2 realloc, 3 memalign, 4 aligned_alloc, 5 valloc, 6 posix_memalign) first
 * 512 MiB at once, then 100 KiB and 4 KiB blocks until the space runs out; every failure
 * must say ENOMEM in errno (and in the result, for posix_memalign). */
static int exhaust(int call)
{
    if (!limit_address_space(64 * MiB))
        return EXHAUST_NO_LIMIT;
    static const size_t sizes[] = { 512 * MiB, 100 * KiB, 4 * KiB };
    void *held = NULL;
    for (size_t s = 0; s < 3; s++)
        for (long k = 0; k < (s == 0 ? 1 : 1L << 20); k++) {
            errno = SENTINEL_ERRNO;
            void *p = NULL;
            int rc = 0;
            switch (call) {
            case 0: p = lib.malloc(sizes[s]); break;
            case 1: p = lib.calloc(1, sizes[s]); break;
            case 2: p = lib.realloc(held, sizes[s] + (held ? lib.malloc_usable_size(held) : 0)); break;
            case 3: p = lib.memalign(64, sizes[s]); break;
            case 4: p = lib.aligned_alloc(64, sizes[s]); break;
            case 5: p = lib.valloc(sizes[s]); break;
            default: rc = lib.posix_memalign(&p, 64, sizes[s]); if (rc != 0) p = NULL; break;
            }
            if (p != NULL) {
                if (s == 0)
                    return EXHAUST_NEVER_FAILED;    /* 512 MiB under a 64 MiB margin */
                if (call == 2)
                    held = p;
                continue;
            }
            if (errno != ENOMEM)
                return EXHAUST_BAD_ERRNO;
            if (call == 6 && rc != ENOMEM)
                return EXHAUST_BAD_RESULT;
            if (s > 0)
                return EXHAUST_OK;
            break;
        }
    return EXHAUST_NEVER_FAILED;
}

static void check_enomem_when_address_space_runs_out(void)
{
    static const char *const names[] = { "malloc", "calloc", "realloc", "memalign",
                                         "aligned_alloc", "valloc", "posix_memalign" };
    static const char *const why[] = { "ok", "setrlimit failed", "allocation never failed",
                                       "errno was not ENOMEM", "result was not ENOMEM" };
    for (int call = 0; call < 7; call++) {
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0)
            _exit(exhaust(call));
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == EXHAUST_OK,
              "%s under RLIMIT_AS: %s (status %#x)", names[call],
              WIFEXITED(status) && WEXITSTATUS(status) < 5 ? why[WEXITSTATUS(status)] : "crashed",
              status);
    }
}

/* posix_memalign reports ENOMEM by its result and, as glibc's does, in errno too. */
static void check_posix_memalign_enomem_sets_errno(void)
{
    for (size_t i = 0; i < NHUGE; i++) {
        void *out = NULL;
        errno = SENTINEL_ERRNO;
        int rc = lib.posix_memalign(&out, 64, huge_sizes[i]);
        CHECK(rc == ENOMEM && errno == ENOMEM, "posix_memalign(64, %#zx): returned %d, errno %d",
              huge_sizes[i], rc, errno);
    }
}

/* The legacy mallinfo(): glibc's struct of ints, filled from mallinfo2 by conversion to
 * int (the low 32 bits), describing the heap malloc really uses. */
static void check_mallinfo_legacy(void)
{
    enum { N = 200 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
        blocks[i] = lib.malloc(1000);
        CHECK(blocks[i] != NULL);
    }
    /* 3 GiB in one mapping, never touched: hblkhd passes INT_MAX. */
    void *big = lib.malloc(3072 * MiB);
    struct mallinfo old = lib.mallinfo();
    struct mallinfo2 wide = lib.mallinfo2();
    for (int i = 0; i < N; i++)
        lib.free(blocks[i]);
    lib.free(big);
    CHECK(old.uordblks >= N * 1000 * 3 / 4,
          "mallinfo().uordblks %d after %d x 1000 bytes: not the heap malloc uses", old.uordblks, N);
    CHECK(old.arena == (int)wide.arena && old.ordblks == (int)wide.ordblks &&
          old.smblks == (int)wide.smblks && old.hblks == (int)wide.hblks &&
          old.hblkhd == (int)wide.hblkhd && old.usmblks == (int)wide.usmblks &&
          old.fsmblks == (int)wide.fsmblks && old.uordblks == (int)wide.uordblks &&
          old.fordblks == (int)wide.fordblks && old.keepcost == (int)wide.keepcost,
          "mallinfo {arena %d hblkhd %d uordblks %d fordblks %d} vs mallinfo2 {%zu %zu %zu %zu}",
          old.arena, old.hblkhd, old.uordblks, old.fordblks, wide.arena, wide.hblkhd,
          wide.uordblks, wide.fordblks);
    if (big != NULL)
        CHECK(wide.hblkhd > (size_t)INT_MAX && old.hblkhd == (int)wide.hblkhd,
              "a 3 GiB block: mallinfo2 hblkhd %zu, mallinfo hblkhd %d", wide.hblkhd, old.hblkhd);
}

/* malloc_stats in a thread with a cancellation pending prints its whole report (its
 * writes are no cancellation points) and leaves no lock held. */
static atomic_int stats_go, stats_returned;

static void *stats_with_cancel_pending(void *arg)
{
    (void)arg;
    while (!atomic_load(&stats_go))
        ;                                       /* no cancellation point in here */
    lib.malloc_stats();
    atomic_store(&stats_returned, 1);
    pthread_testcancel();
    return NULL;
}

static void *allocate_a_little(void *arg)
{
    for (int i = 0; i < 100; i++)
        lib.free(lib.malloc((size_t)(16 + 100 * i)));
    return arg;
}

static void check_malloc_stats_with_cancel_pending(void)
{
    int saved, fd = capture_stderr(&saved);
    CHECK(fd >= 0, "stderr to a temporary file: %s", strerror(errno));
    void *p = lib.malloc(1000);
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, stats_with_cancel_pending, NULL);
    if (rc == 0) {
        pthread_cancel(thread);
        atomic_store(&stats_go, 1);
    }
    void *result = NULL;
    if (rc == 0)
        pthread_join(thread, &result);
    restore_stderr(saved);
    CHECK(rc == 0, "pthread_create: %s", strerror(rc));
    static char text[8192];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    CHECK(result == PTHREAD_CANCELED, "the thread was not cancelled (%p)", result);
    CHECK(atomic_load(&stats_returned), "malloc_stats did not return: cancelled inside it; "
          "it wrote \"%s\"", text);
    CHECK(strstr(text, "Total (incl. mmap):") != NULL && strstr(text, "max mmap bytes") != NULL,
          "malloc_stats with a cancellation pending wrote only \"%s\"", text);
    /* No lock left held: this thread and a new one allocate (a hang here is the failure
     * the test driver's timeout reports). */
    lib.free(p);
    allocate_a_little(NULL);
    CHECK(pthread_create(&thread, NULL, allocate_a_little, NULL) == 0);
    pthread_join(thread, NULL);
}

/* ---- __libc_* entry points and one allocator ------------------------------------------------------ */

static void check_libc_entry_points_interoperate(void)
{
    unsigned char *a = lib.libc_malloc(100);
    CHECK(a != NULL && addr_of(a) % 16 == 0, "__libc_malloc(100) = %p", (void *)a);
    pattern_fill(a, 0, 100, 21);
    unsigned char *b = lib.malloc(200);
    CHECK(b != NULL);
    pattern_fill(b, 0, 200, 22);
    unsigned char *c = lib.libc_calloc(50, 4);
    CHECK(c != NULL);
    for (int i = 0; i < 200; i++)
        CHECK(c[i] == 0, "__libc_calloc byte %d", i);
    a = lib.realloc(a, 5000);                   /* __libc_malloc's block through realloc */
    CHECK(a != NULL);
    CHECK_PATTERN(a, 100, 21);
    b = lib.libc_realloc(b, 300000);            /* malloc's block through __libc_realloc */
    CHECK(b != NULL);
    CHECK_PATTERN(b, 200, 22);
    unsigned char *d = lib.libc_memalign(64, 100);
    CHECK(d != NULL && addr_of(d) % 64 == 0, "__libc_memalign(64, 100) = %p", (void *)d);
    CHECK(lib.malloc_usable_size(d) >= 100);
    lib.libc_free(a);                           /* and each freed by the other family */
    lib.free(b);
    lib.free(c);
    lib.libc_free(d);
    lib.libc_free(NULL);
    unsigned char *e = lib.libc_calloc(1, 300000);
    CHECK(e != NULL && e[299999] == 0);
    lib.free(e);
}

static void check_one_allocator_provides_everything(void)
{
    /* A function the preload library forgot would come from libc and mix two heaps. */
    struct { const char *name; void *fn; } fns[] = {
        { "malloc", (void *)lib.malloc }, { "free", (void *)lib.free },
        { "calloc", (void *)lib.calloc }, { "realloc", (void *)lib.realloc },
        { "reallocarray", (void *)lib.reallocarray }, { "memalign", (void *)lib.memalign },
        { "posix_memalign", (void *)lib.posix_memalign },
        { "aligned_alloc", (void *)lib.aligned_alloc }, { "valloc", (void *)lib.valloc },
        { "pvalloc", (void *)lib.pvalloc }, { "malloc_usable_size", (void *)lib.malloc_usable_size },
        { "mallopt", (void *)lib.mallopt }, { "malloc_trim", (void *)lib.malloc_trim },
        { "mallinfo2", (void *)lib.mallinfo2 }, { "malloc_stats", (void *)lib.malloc_stats },
        { "malloc_info", (void *)lib.malloc_info }, { "__libc_malloc", (void *)lib.libc_malloc },
        { "__libc_free", (void *)lib.libc_free }, { "__libc_calloc", (void *)lib.libc_calloc },
        { "__libc_realloc", (void *)lib.libc_realloc },
        { "__libc_memalign", (void *)lib.libc_memalign }, { "mallinfo", (void *)lib.mallinfo },
    };
    const char *home = allocator_object();
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        Dl_info info;
        CHECK(dladdr(fns[i].fn, &info) != 0 && info.dli_fname != NULL, "dladdr(%s)", fns[i].name);
        CHECK(strcmp(info.dli_fname, home) == 0, "%s comes from %s, malloc from %s",
              fns[i].name, info.dli_fname, home);
    }
}

/* ---- the table ----------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    void (*run)(void);
} checks[] = {
    { "one_allocator_provides_everything", check_one_allocator_provides_everything },
    { "malloc_zero_unique", check_malloc_zero_unique },
    { "malloc_alignment_1_to_4096", check_malloc_alignment_1_to_4096 },
    { "calloc_alignment_and_zero", check_calloc_alignment_and_zero },
    { "calloc_zeroes_reused_memory", check_calloc_zeroes_reused_memory },
    { "realloc_alignment", check_realloc_alignment },
    { "realloc_preserves_contents", check_realloc_preserves_contents },
    { "realloc_zero_frees", check_realloc_zero_frees },
    { "realloc_null_mallocs", check_realloc_null_mallocs },
    { "enomem_malloc", check_enomem_malloc },
    { "enomem_calloc", check_enomem_calloc },
    { "enomem_realloc", check_enomem_realloc },
    { "enomem_reallocarray", check_enomem_reallocarray },
    { "enomem_memalign", check_enomem_memalign },
    { "enomem_posix_memalign", check_enomem_posix_memalign },
    { "enomem_aligned_alloc", check_enomem_aligned_alloc },
    { "enomem_valloc", check_enomem_valloc },
    { "enomem_pvalloc", check_enomem_pvalloc },
    { "calloc_overflow", check_calloc_overflow },
    { "reallocarray_overflow", check_reallocarray_overflow },
    { "aligned_results", check_aligned_results },
    { "memalign_rounds_bad_alignment_up", check_memalign_rounds_bad_alignment_up },
    { "aligned_alloc_rejects_bad_alignment", check_aligned_alloc_rejects_bad_alignment },
    { "posix_memalign_rejects_bad_alignment", check_posix_memalign_rejects_bad_alignment },
    { "valloc_page_aligned", check_valloc_page_aligned },
    { "pvalloc_rounds_to_pages", check_pvalloc_rounds_to_pages },
    { "free_keeps_errno", check_free_keeps_errno },
    { "usable_size_covers_request", check_usable_size_covers_request },
    { "mallopt_known_params", check_mallopt_known_params },
    { "mallopt_unknown_params_accepted", check_mallopt_unknown_params_accepted },
    { "mallopt_mmap_threshold_takes_effect", check_mallopt_mmap_threshold_takes_effect },
    { "malloc_trim_returns_0_or_1", check_malloc_trim_returns_0_or_1 },
    { "malloc_trim_releases_free_pages", check_malloc_trim_releases_free_pages },
    { "mallinfo2_sane", check_mallinfo2_sane },
    { "malloc_stats_writes", check_malloc_stats_writes },
    { "posix_memalign_enomem_sets_errno", check_posix_memalign_enomem_sets_errno },
    { "enomem_when_address_space_runs_out", check_enomem_when_address_space_runs_out },
    { "mallinfo_legacy", check_mallinfo_legacy },
    { "malloc_stats_with_cancel_pending", check_malloc_stats_with_cancel_pending },
    { "malloc_info_xml", check_malloc_info_xml },
    { "libc_entry_points_interoperate", check_libc_entry_points_interoperate },
};
#define NCHECKS (sizeof checks / sizeof checks[0])

static int run(size_t i)
{
    check_name = checks[i].name;
    check_failed = false;
    checks[i].run();
    if (!check_failed)
        printf("ok %s\n", check_name);
    fflush(stdout);
    return check_failed;
}

int main(int argc, char **argv)
{
    prog_name = "edge_contract";
    page = (size_t)sysconf(_SC_PAGESIZE);
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < NCHECKS; i++)
            printf("%s\n", checks[i].name);
        return 0;
    }
    printf("allocator %s\n", allocator_object());
    fflush(stdout);
    int failures = 0;
    if (argc == 1) {
        for (size_t i = 0; i < NCHECKS; i++)
            failures += run(i);
    } else {
        for (int a = 1; a < argc; a++) {
            size_t i = 0;
            while (i < NCHECKS && strcmp(checks[i].name, argv[a]) != 0)
                i++;
            if (i == NCHECKS) {
                fprintf(stderr, "edge_contract: no check named '%s' (--list shows them)\n", argv[a]);
                return 2;
            }
            failures += run(i);
        }
    }
    return failures > 0;
}
