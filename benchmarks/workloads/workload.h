/* workload.h: what every allocator workload shares (see README.md for the contract).
 *
 * - parse_args(): -n OPS, -t THREADS, -s SEED; anything else prints usage, exits 2.
 * - rng_next()/mix64(): splitmix64, a deterministic generator and hash.
 * - fill()/verify(): write a key-derived pattern into a block (touching every page of
 *   it) and check it before free; verify() returns a hash of what it read back.
 * - stamp()/unstamp(): the same for self-describing blocks (id and size in a header),
 *   for workloads where the thread that frees a block does not know what it holds.
 * - run_threads(): run a worker on T threads (the first on the calling thread, so
 *   T = 1 never creates a thread) and add up their checksums (order-independent).
 * - finish(): print the one result line.
 *
 * Header-only (static functions), so each workload is one `gcc x.c` away. */
#ifndef WORKLOAD_H
#define WORKLOAD_H

#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096u
#define MAX_THREADS 256u

struct opts {
    uint64_t n;        /* amount of work (what "ops" counts is workload-specific) */
    unsigned threads;
    uint64_t seed;
};

static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("workload error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        die("malloc(%zu) returned NULL", n);
    return p;
}

static inline void usage(const char *prog, const char *about, unsigned min_t, unsigned max_t,
                  uint64_t def_n, unsigned def_t)
{
    fprintf(stderr, "usage: %s [-n OPS] [-t THREADS] [-s SEED]\n  %s\n"
            "  -n OPS      amount of work (default %" PRIu64 ")\n"
            "  -t THREADS  %u..%u (default %u)\n"
            "  -s SEED     random seed (default 1)\n", prog, about, def_n, min_t, max_t, def_t);
    exit(2);
}

static inline int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (*s < '0' || *s > '9')
        return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0')
        return 0;
    *out = v;
    return 1;
}

static inline struct opts parse_args(int argc, char **argv, const char *about, uint64_t def_n,
                              unsigned def_t, unsigned min_t, unsigned max_t)
{
    struct opts o = {def_n, def_t, 1};
    uint64_t v;
    int c;
    opterr = 0;
    while ((c = getopt(argc, argv, "n:t:s:")) != -1) {
        if (c == 'n' && parse_u64(optarg, &v) && v >= 1)
            o.n = v;
        else if (c == 't' && parse_u64(optarg, &v) && v >= min_t && v <= max_t)
            o.threads = (unsigned)v;
        else if (c == 's' && parse_u64(optarg, &v))
            o.seed = v;
        else
            usage(argv[0], about, min_t, max_t, def_n, def_t);
    }
    if (optind != argc)
        usage(argv[0], about, min_t, max_t, def_n, def_t);
    return o;
}

/* splitmix64: the finaliser is a good 64-bit hash, the whole a fast generator. */
static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *state)
{
    return mix64(*state += 0x9e3779b97f4a7c15ull);
}

/* Uniform in [lo, hi] (the modulo bias is irrelevant here). */
static inline uint64_t rng_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    return lo + rng_next(state) % (hi - lo + 1);
}

/* A generator per (seed, thread): thread t's stream never depends on scheduling. */
static inline uint64_t rng_seed(uint64_t seed, unsigned tid)
{
    return mix64(seed * 0x100000001b3ull + tid + 1);
}

/* Keep the compiler from eliding a malloc/free pair or caching the block's bytes:
 * the pointer escapes and memory is clobbered. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "g"(p) : "memory");
}

/* Pattern of a block of n bytes with key: its first min(n, 8) bytes, one byte in every
 * page after the first and, when n > 8, the last byte. */
static inline void fill(unsigned char *p, size_t n, uint64_t key)
{
    uint64_t w = mix64(key ^ (uint64_t)n);
    if (n == 0)
        return;
    memcpy(p, &w, n < 8 ? n : 8);
    for (size_t off = PAGE; off + 1 < n; off += PAGE)
        p[off] = (unsigned char)((w >> 8) + (off >> 12));
    if (n > 8)
        p[n - 1] = (unsigned char)(w >> 16);
    escape(p);
}

/* Check the pattern fill() wrote; die on a mismatch; return a hash of what was read. */
static inline uint64_t verify(const unsigned char *p, size_t n, uint64_t key, const char *what)
{
    uint64_t w = mix64(key ^ (uint64_t)n), got = 0, want = 0, h;
    size_t k = n < 8 ? n : 8;
    if (n == 0)
        return mix64(key);
    memcpy(&got, p, k);
    memcpy(&want, &w, k);
    if (got != want)
        die("%s: block of %zu bytes (key %#" PRIx64 ") corrupted in its first bytes", what, n, key);
    h = got;
    for (size_t off = PAGE; off + 1 < n; off += PAGE) {
        if (p[off] != (unsigned char)((w >> 8) + (off >> 12)))
            die("%s: block of %zu bytes (key %#" PRIx64 ") corrupted at offset %zu", what, n, key, off);
        h = h * 31 + p[off];
    }
    if (n > 8) {
        if (p[n - 1] != (unsigned char)(w >> 16))
            die("%s: block of %zu bytes (key %#" PRIx64 ") corrupted in its last byte", what, n, key);
        h = h * 31 + p[n - 1];
    }
    return mix64(h ^ ((uint64_t)n << 40));
}

/* Self-describing blocks (size >= 16): id and size in a 16-byte header, then fill(). */
#define STAMP_MIN 16u

static inline void stamp(unsigned char *p, size_t size, uint64_t id)
{
    uint64_t sz = size;
    memcpy(p, &id, 8);
    memcpy(p + 8, &sz, 8);
    fill(p + 16, size - 16, id);
}

static inline uint64_t unstamp(const unsigned char *p, const char *what)
{
    uint64_t id, sz;
    memcpy(&id, p, 8);
    memcpy(&sz, p + 8, 8);
    if (sz < STAMP_MIN || sz > (1ull << 32))
        die("%s: header of block %#" PRIx64 " corrupted (size %" PRIu64 ")", what, id, sz);
    return mix64(id) + verify(p + 16, (size_t)sz - 16, id, what);
}

/* Thread t's share of n units of work. */
static inline uint64_t share(uint64_t n, unsigned threads, unsigned t)
{
    return n / threads + (t < n % threads);
}

typedef uint64_t (*worker_fn)(unsigned tid, void *ctx);

struct worker {
    pthread_t th;
    unsigned tid;
    worker_fn fn;
    void *ctx;
    uint64_t result;
};

static inline void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->result = w->fn(w->tid, w->ctx);
    return NULL;
}

/* Run fn(0..threads-1, ctx); thread 0 is the caller. Returns the sum of the results. */
static inline uint64_t run_threads(unsigned threads, worker_fn fn, void *ctx)
{
    static struct worker w[MAX_THREADS];
    uint64_t sum = 0;
    for (unsigned t = 1; t < threads; t++) {
        w[t] = (struct worker){.tid = t, .fn = fn, .ctx = ctx};
        if (pthread_create(&w[t].th, NULL, worker_main, &w[t]) != 0)
            die("pthread_create failed");
    }
    sum = fn(0, ctx);
    for (unsigned t = 1; t < threads; t++) {
        pthread_join(w[t].th, NULL);
        sum += w[t].result;
    }
    return sum;
}

/* The one line on stdout. extra is "" or " key=value ...". */
static inline void finish(uint64_t sum, const struct opts *o, const char *extra)
{
    uint64_t checksum = mix64(sum ^ mix64(o->n + ((uint64_t)o->threads << 48)));
    printf("checksum=%016" PRIx64 " ops=%" PRIu64 "%s\n", checksum, o->n, extra);
    if (fflush(stdout) != 0)
        die("cannot write the result");
}

#endif
