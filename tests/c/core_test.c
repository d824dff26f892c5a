/* core_test.c - named checks of the core's C API, linked directly against csrc/core/ and
 * built with -fsanitize=address,undefined (the allocator under test is prm_*, not the
 * process's malloc, so the sanitizers watch the core's own code). Run by
 * tests/test_c_core.py; prints "ok <name>" per check, exits 1 on the first failure.
 *
 * usage: core_test [name...]   (no names: run all) */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "prm.h"
#include "internal.h"   /* request_tcache_index, checked against its definition */

#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                    \
        }                                                                               \
    } while (0)

static void require_heap_ok(const char *where)
{
    char message[512];
    if (prm_check(message, sizeof message) != PRM_OK) {
        fprintf(stderr, "FAIL heap check after %s: %s\n", where, message);
        exit(1);
    }
}

/* ---- the checks ---------------------------------------------------------------------- */

static void test_malloc_zero_is_unique(void)
{
    void *a = prm_malloc(0), *b = prm_malloc(0);
    REQUIRE(a != NULL && b != NULL && a != b);
    REQUIRE(prm_usable_size(a) >= 16);
    prm_free(a);
    prm_free(b);
}

static void test_alignment_of_every_size(void)
{
    for (size_t n = 1; n <= 4096; n += 7) {
        void *p = prm_malloc(n);
        REQUIRE(p != NULL && ((uintptr_t)p & 15) == 0);
        REQUIRE(prm_usable_size(p) >= n);
        memset(p, 0xab, n);
        prm_free(p);
    }
    require_heap_ok("alignment");
}

/* malloc's fast path finds a request's cache bin without request2size's clamp. */
static void test_cache_index_of_every_small_request(void)
{
    for (size_t n = 0; n <= PRM_TCACHE_MAX_REQUEST; n++)
        REQUIRE(request_tcache_index(n) == tcache_index(request2size(n)));
    for (size_t n = 0; n <= PRM_TCACHE_MAX_REQUEST; n++) {
        void *p = prm_malloc(n);
        REQUIRE(p != NULL && prm_usable_size(p) == request2size(n) - PRM_SIZE_SZ);
        prm_free(p);
    }
}

static void test_free_null_and_errno(void)
{
    REQUIRE(prm_free(NULL) == PRM_OK);
    void *p = prm_malloc(100);
    errno = 12345;
    prm_free(p);
    REQUIRE(errno == 12345);
    void *big = prm_malloc(1 << 20);
    errno = 4242;
    prm_free(big);
    REQUIRE(errno == 4242);
}

static void test_huge_requests_fail_with_enomem(void)
{
    size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        errno = 0;
        REQUIRE(prm_malloc(sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        REQUIRE(prm_memalign(4096, sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        REQUIRE(prm_valloc(sizes[i]) == NULL && errno == ENOMEM);
        errno = 0;
        REQUIRE(prm_pvalloc(sizes[i]) == NULL && errno == ENOMEM);
        void *p = prm_malloc(10);
        errno = 0;
        REQUIRE(prm_realloc(p, sizes[i]) == NULL && errno == ENOMEM);
        prm_free(p);   /* realloc failure leaves p valid */
    }
    require_heap_ok("huge requests");
}

static void test_calloc_overflow_and_zeroing(void)
{
    errno = 0;
    REQUIRE(prm_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM);
    errno = 0;
    REQUIRE(prm_calloc((size_t)1 << 33, (size_t)1 << 33) == NULL && errno == ENOMEM);
    /* Dirty a chunk, free it, calloc the same size: it must come back zeroed. */
    for (size_t n = 16; n < 300000; n = n * 3 + 5) {
        unsigned char *dirty = prm_malloc(n);
        memset(dirty, 0xee, n);
        prm_free(dirty);
        unsigned char *z = prm_calloc(1, n);
        REQUIRE(z != NULL);
        for (size_t i = 0; i < n; i++)
            REQUIRE(z[i] == 0);
        prm_free(z);
    }
    require_heap_ok("calloc");
}

static void test_realloc_semantics(void)
{
    char *p = prm_realloc(NULL, 40);          /* realloc(NULL, n) is malloc(n) */
    REQUIRE(p != NULL);
    memcpy(p, "0123456789", 10);
    char *q = prm_realloc(p, 24);             /* shrink: stays in place */
    REQUIRE(q == p && memcmp(q, "0123456789", 10) == 0);
    char *r = prm_realloc(q, 100000);         /* grow: content kept */
    REQUIRE(r != NULL && memcmp(r, "0123456789", 10) == 0);
    errno = 0;
    REQUIRE(prm_realloc(r, 0) == NULL);       /* realloc(p, 0) frees p */
    require_heap_ok("realloc");
}

static void test_realloc_mmapped_uses_mremap(void)
{
    /* 40 MiB is above the largest mmap threshold (32 MiB), dynamic or not. */
    const size_t mib = 1 << 20;
    prm_stats before, after;
    char *p = prm_malloc(40 * mib);
    REQUIRE(p != NULL);
    memset(p, 'x', 40 * mib);
    prm_get_stats(&before);
    char *q = prm_realloc(p, 48 * mib);
    prm_get_stats(&after);
    REQUIRE(q != NULL && q[0] == 'x' && q[40 * mib - 1] == 'x');
    REQUIRE(after.mremap_calls == before.mremap_calls + 1);
    REQUIRE(prm_usable_size(q) >= 48 * mib);
    prm_free(q);
    require_heap_ok("mremap");
}

static void test_memalign_family(void)
{
    for (size_t align = 1; align <= 65536; align <<= 1) {
        for (size_t n = 0; n < 70000; n = n * 2 + 13) {
            void *p = prm_memalign(align, n);
            REQUIRE(p != NULL && ((uintptr_t)p & (align - 1)) == 0 && prm_usable_size(p) >= n);
            memset(p, 0x5a, n);
            prm_free(p);
        }
    }
    errno = 0;
    REQUIRE(prm_memalign(24, 10) == NULL && errno == EINVAL);
    REQUIRE(prm_memalign(0, 10) == NULL && errno == EINVAL);
    REQUIRE(prm_aligned_alloc(48, 10) == NULL && errno == EINVAL);
    void *out = (void *)1;
    REQUIRE(prm_posix_memalign(&out, 4, 10) == EINVAL && out == (void *)1);     /* < sizeof(void *) */
    REQUIRE(prm_posix_memalign(&out, 24, 10) == EINVAL && out == (void *)1);    /* not a power of two */
    REQUIRE(prm_posix_memalign(&out, 64, SIZE_MAX) == ENOMEM && out == (void *)1);
    REQUIRE(prm_posix_memalign(&out, 64, 10) == 0 && ((uintptr_t)out & 63) == 0);
    prm_free(out);
    size_t page = prm_page_size();
    void *v = prm_valloc(10);
    REQUIRE(((uintptr_t)v & (page - 1)) == 0);
    void *pv = prm_pvalloc(page + 1);
    REQUIRE(((uintptr_t)pv & (page - 1)) == 0 && prm_usable_size(pv) >= 2 * page);
    prm_free(v);
    prm_free(pv);
    require_heap_ok("memalign");
}

static void test_mallopt_contract(void)
{
    REQUIRE(prm_mallopt(PRM_M_MXFAST, 161) == 0);    /* above glibc's MAX_FAST_SIZE */
    REQUIRE(prm_mallopt(PRM_M_MXFAST, -1) == 0);
    REQUIRE(prm_mallopt(PRM_M_MXFAST, 64) == 1);
    REQUIRE(prm_mallopt(PRM_M_MMAP_THRESHOLD, 64 * 1024 * 1024) == 0);   /* above 32 MiB */
    REQUIRE(prm_mallopt(PRM_M_MMAP_THRESHOLD, 256 * 1024) == 1);
    REQUIRE(prm_mallopt(12345, 1) == 1);              /* unknown: ignored, as glibc */
    prm_stats s;
    prm_get_stats(&s);
    REQUIRE(s.max_fast == 64 && s.mmap_threshold == 256 * 1024 && s.dynamic_thresholds == 0);
    REQUIRE(prm_mallopt(PRM_M_MXFAST, 128) == 1);
}

static void test_brk_refused_falls_back_to_mmap(void)
{
    /* Exhaust top, then make the next brk growth fail: the heap continues in an
     * mmapped segment and everything still checks out. */
    prm_stats before, after;
    prm_get_stats(&before);
    REQUIRE(prm_inject_os_failures(0, 1) == 0);
    void *blocks[64];
    for (int i = 0; i < 64; i++) {
        blocks[i] = prm_malloc(60000);
        REQUIRE(blocks[i] != NULL);
        memset(blocks[i], i, 60000);
    }
    prm_get_stats(&after);
    REQUIRE(after.brk_failures == before.brk_failures + 1);
    REQUIRE(after.segments > before.segments);
    require_heap_ok("mmap fallback");
    for (int i = 0; i < 64; i++)
        prm_free(blocks[i]);
    require_heap_ok("mmap fallback frees");
}

static void test_os_refusal_is_enomem(void)
{
    REQUIRE(prm_inject_os_failures(0, 1000) == 0);
    REQUIRE(prm_inject_os_failures(1, 1000) == 0);
    errno = 0;
    REQUIRE(prm_malloc(64 << 20) == NULL && errno == ENOMEM);   /* mmap refused, brk refused */
    REQUIRE(prm_inject_os_failures(0, 0) == 0);
    REQUIRE(prm_inject_os_failures(1, 0) == 0);
    void *p = prm_malloc(64 << 20);
    REQUIRE(p != NULL);
    prm_free(p);
    require_heap_ok("refusal");
}

/* Random operations on a table of blocks, each filled with a pattern of its own. */
static void churn(unsigned seed, int steps, int check_every)
{
    enum { SLOTS = 256 };
    unsigned char *blocks[SLOTS] = { 0 };
    size_t sizes[SLOTS] = { 0 };
    uint64_t local = seed * 2654435761u + 1;
    for (int step = 0; step < steps; step++) {
        local ^= local << 13, local ^= local >> 7, local ^= local << 17;
        int slot = (int)(local % SLOTS);
        size_t n = (local >> 20) % 4 == 0 ? (local >> 24) % 300000 : (local >> 24) % 600;
        if (blocks[slot] != NULL) {
            for (size_t i = 0; i < sizes[slot]; i += 61)
                REQUIRE(blocks[slot][i] == (unsigned char)slot);
            if ((local >> 40) % 3 == 0) {
                blocks[slot] = prm_realloc(blocks[slot], n + 1);
                REQUIRE(blocks[slot] != NULL);
                size_t keep = sizes[slot] < n + 1 ? sizes[slot] : n + 1;
                for (size_t i = 0; i < keep; i += 61)
                    REQUIRE(blocks[slot][i] == (unsigned char)slot);
                memset(blocks[slot], slot, n + 1);
                sizes[slot] = n + 1;
                continue;
            }
            prm_free(blocks[slot]);
            blocks[slot] = NULL;
        } else {
            switch ((local >> 44) % 3) {
            case 0: blocks[slot] = prm_malloc(n); break;
            case 1: blocks[slot] = prm_calloc(1, n); break;
            default: blocks[slot] = prm_memalign((size_t)1 << ((local >> 48) % 13), n); break;
            }
            REQUIRE(blocks[slot] != NULL);
            memset(blocks[slot], slot, n);
            sizes[slot] = n;
        }
        if (check_every && step % check_every == 0)
            require_heap_ok("churn step");
    }
    for (int i = 0; i < SLOTS; i++)
        prm_free(blocks[i]);
}

static void test_random_churn_checked(void)
{
    churn(1, 20000, 97);
    require_heap_ok("churn");
}

static void *churn_thread(void *arg)
{
    churn((unsigned)(uintptr_t)arg, 40000, 0);
    return NULL;
}

static void test_threads_share_the_arena(void)
{
    pthread_t threads[4];
    for (uintptr_t i = 0; i < 4; i++)
        REQUIRE(pthread_create(&threads[i], NULL, churn_thread, (void *)(i + 10)) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    require_heap_ok("threads");
    prm_stats s;
    prm_get_stats(&s);
    REQUIRE(s.in_use_chunks == 0 && s.in_use_bytes == 0);
}

static void test_trim_returns_memory(void)
{
    void *blocks[100];
    for (int i = 0; i < 100; i++)
        blocks[i] = prm_malloc(20000);
    void *pin = prm_malloc(100);   /* pins the heap: nothing below it can go by brk */
    for (int i = 0; i < 100; i++)
        prm_free(blocks[i]);
    prm_stats before, after;
    prm_get_stats(&before);
    REQUIRE(prm_malloc_trim(0) == 1);
    prm_get_stats(&after);
    REQUIRE(after.discard_bytes > before.discard_bytes + 1000000);   /* ~2 MB were free */
    prm_free(pin);
    require_heap_ok("trim");
}

/* Built without PRM_RECOVERABLE, as the LD_PRELOAD library will be: a detected double
 * free writes one line naming the check and aborts. Run in a child process. */
static void test_double_free_aborts_with_one_line(void)
{
    int out[2];
    REQUIRE(pipe(out) == 0);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        dup2(out[1], 2);
        void *p = prm_malloc(2000), *guard = prm_malloc(24);
        prm_free(p);
        prm_free(p);
        (void)guard;
        _exit(0);
    }
    close(out[1]);
    char line[512] = { 0 };
    size_t got = 0;
    ssize_t n;
    while (got < sizeof line - 1 && (n = read(out[0], line + got, sizeof line - 1 - got)) > 0)
        got += (size_t)n;
    int status;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    const char *expected = "pymalloc_real: double free or corruption (!prev): ";
    REQUIRE(strncmp(line, expected, strlen(expected)) == 0);
    REQUIRE(strstr(line, "(ptr 0x") != NULL && strchr(line, '\n') == line + strlen(line) - 1);
}

struct named_test {
    const char *name;
    void (*run)(void);
};

static const struct named_test tests[] = {
    { "malloc_zero_is_unique", test_malloc_zero_is_unique },
    { "alignment_of_every_size", test_alignment_of_every_size },
    { "cache_index_of_every_small_request", test_cache_index_of_every_small_request },
    { "free_null_and_errno", test_free_null_and_errno },
    { "huge_requests_fail_with_enomem", test_huge_requests_fail_with_enomem },
    { "calloc_overflow_and_zeroing", test_calloc_overflow_and_zeroing },
    { "realloc_semantics", test_realloc_semantics },
    { "realloc_mmapped_uses_mremap", test_realloc_mmapped_uses_mremap },
    { "memalign_family", test_memalign_family },
    { "mallopt_contract", test_mallopt_contract },
    { "brk_refused_falls_back_to_mmap", test_brk_refused_falls_back_to_mmap },
    { "os_refusal_is_enomem", test_os_refusal_is_enomem },
    { "random_churn_checked", test_random_churn_checked },
    { "threads_share_the_arena", test_threads_share_the_arena },
    { "trim_returns_memory", test_trim_returns_memory },
    { "double_free_aborts_with_one_line", test_double_free_aborts_with_one_line },
};

int main(int argc, char **argv)
{
    size_t count = sizeof tests / sizeof tests[0];
    for (size_t i = 0; i < count; i++) {
        int wanted = argc == 1;
        for (int a = 1; a < argc; a++)
            wanted |= strcmp(argv[a], tests[i].name) == 0;
        if (!wanted)
            continue;
        tests[i].run();
        printf("ok %s\n", tests[i].name);
        fflush(stdout);
    }
    return 0;
}
