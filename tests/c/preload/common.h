/* common.h - helpers shared by the LD_PRELOAD test programs in this directory: the
 * REQUIRE macro, a seeded PRNG, position-dependent block patterns, a progress
 * watchdog that turns a deadlock into a clean failure, and the name of the object that
 * really provides malloc (so a test can prove the preload took effect).
 *
 * Failures are formatted into a stack buffer and written with write(2): no stdio locks
 * (a forked child may inherit one held) and, for these plain formats, no malloc (the
 * heap may be what broke). The watchdog's handler uses async-signal-safe calls only. */
#ifndef PRELOAD_COMMON_H
#define PRELOAD_COMMON_H

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The program's name in failure messages; each program sets it first thing in main. */
static const char *prog_name = "?";

/* ---- failure reporting ------------------------------------------------------------ */

/* Write all of buf to fd, retrying on EINTR; async-signal-safe. */
static inline void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

static inline void write_str(int fd, const char *s)
{
    write_all(fd, s, strlen(s));
}

/* Decimal text of v into buf (at least 24 bytes); async-signal-safe. */
static inline const char *fmt_u64(char *buf, uint64_t v)
{
    char *p = buf + 23;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return p;
}

/* Called before the program _exits on a failure (fail_at or the watchdog) to take the
 * children it forked down with it, so none is left hanging; async-signal-safe. A forked
 * child clears it first thing (its siblings are not its to kill). */
static void (*volatile kill_children_hook)(void);

/* "FAIL <prog> <file>:<line>: <cond>[: <message>]" on stderr, then _exit(1). _exit, not
 * exit: other threads may still be inside the allocator, and atexit handlers (or a
 * preload library's exit report) must not run on a heap we just found broken.
 * fmt always starts with a space (see REQUIRE); a lone space means no message. */
__attribute__((noreturn, format(printf, 4, 5)))
static inline void fail_at(const char *file, int line, const char *cond, const char *fmt, ...)
{
    char msg[1024];
    int n = snprintf(msg, sizeof msg - 1, "FAIL %s %s:%d: %s", prog_name, file, line, cond);
    if (n < 0 || (size_t)n >= sizeof msg - 1)
        n = (int)sizeof msg - 2;
    if (strcmp(fmt, " ") != 0 && (size_t)n + 2 < sizeof msg - 1) {
        msg[n++] = ':';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(msg + n, sizeof msg - 1 - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
        if ((size_t)n >= sizeof msg - 1)
            n = (int)sizeof msg - 2;
    }
    msg[n] = '\n';
    write_all(2, msg, (size_t)n + 1);
    if (kill_children_hook != NULL)
        kill_children_hook();
    _exit(1);
}

/* REQUIRE(cond) or REQUIRE(cond, "format", args...): fail naming file, line, the
 * condition's text and the message. */
#define REQUIRE(cond, ...)                                                               \
    do {                                                                                 \
        if (!(cond))                                                                     \
            fail_at(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                         \
    } while (0)

/* ---- arguments -------------------------------------------------------------------- */

/* argv[i] as a number in [lo, hi], dflt if absent; a bad one exits 2 with usage text. */
static inline unsigned long arg_ulong(int argc, char **argv, int i, unsigned long dflt,
                                      unsigned long lo, unsigned long hi, const char *what)
{
    if (i >= argc)
        return dflt;
    char *end;
    errno = 0;
    unsigned long v = strtoul(argv[i], &end, 10);
    if (errno != 0 || end == argv[i] || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: bad %s '%s' (want %lu..%lu)\n", prog_name, what, argv[i], lo, hi);
        exit(2);
    }
    return v;
}

/* ---- time ------------------------------------------------------------------------- */

static inline double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);   /* an EINTR just shortens the nap; callers loop on a clock */
}

/* ---- PRNG (splitmix64: tiny state, one word per thread, deterministic per seed) ------ */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t rng_next(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return mix64(*state);
}

/* Uniform in [lo, hi] (hi - lo much smaller than 2^64, so the bias is negligible). */
static inline size_t rng_range(uint64_t *state, size_t lo, size_t hi)
{
    return lo + (size_t)(rng_next(state) % (hi - lo + 1));
}

/* ---- opaque pointers ---------------------------------------------------------------- */

/* Hide where a pointer came from. glibc's headers tell the compiler that malloc's result
 * is 16-byte aligned, memalign's is aligned to its argument and calloc's memory is zero;
 * GCC uses that to fold away exactly the checks these programs make. The empty asm
 * makes the value unknown without changing it. */
static inline void *opaque(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

static inline uintptr_t addr_of(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    __asm__ volatile("" : "+r"(a));
    return a;
}

/* ---- minimum alignment -------------------------------------------------------------- */

/* glibc (and the allocator under test) align every block to 16 bytes. C only asks for
 * alignment suitable for any object that fits, so jemalloc hands out 8-byte-aligned
 * blocks of 8 bytes or less. PRELOAD_TEST_C_ALIGNMENT=1 in the environment accepts the
 * C minimum, so these programs can be validated on such allocators; the tests never
 * set it. Read once at startup (before any thread or fork). */
static int c_alignment_only = -1;

static inline size_t min_alignment(size_t size)
{
    if (c_alignment_only < 0) {
        const char *e = getenv("PRELOAD_TEST_C_ALIGNMENT");
        c_alignment_only = e != NULL && strcmp(e, "1") == 0;
    }
    if (!c_alignment_only)
        return 16;
    size_t a = 1;
    while (a < 16 && a * 2 <= size)
        a *= 2;
    return a;
}

/* ---- block patterns ------------------------------------------------------------------ */

/* A block of n bytes tagged with id holds: bytes 0..7 = id itself (as far as n allows),
 * then 8-byte words derived from (id, word index). A block that moved, overlapped
 * another, or was handed out twice shows a wrong id or a wrong word. The pattern of a
 * byte depends only on id and offset, so a realloc keeps the prefix valid. */
static inline uint64_t pattern_word(uint64_t id, size_t k)
{
    return k == 0 ? id : mix64(id) + k * 0x9e3779b97f4a7c15ULL;
}

static inline unsigned char pattern_byte(uint64_t id, size_t off)
{
    uint64_t w = pattern_word(id, off / 8);
    unsigned char b[8];
    memcpy(b, &w, 8);
    return b[off % 8];
}

/* Write the pattern of id into p[from, to). */
static inline void pattern_fill(unsigned char *p, size_t from, size_t to, uint64_t id)
{
    size_t off = from;
    while (off < to && off % 8 != 0) {
        p[off] = pattern_byte(id, off);
        off++;
    }
    for (; off + 8 <= to; off += 8) {
        uint64_t w = pattern_word(id, off / 8);
        memcpy(p + off, &w, 8);
    }
    for (; off < to; off++)
        p[off] = pattern_byte(id, off);
}

/* Offset of the first byte in p[from, to) that differs from id's pattern, or -1. */
static inline long pattern_check(const unsigned char *p, size_t from, size_t to, uint64_t id)
{
    size_t off = from;
    while (off < to && off % 8 != 0) {
        if (p[off] != pattern_byte(id, off))
            return (long)off;
        off++;
    }
    for (; off + 8 <= to; off += 8) {
        uint64_t w = pattern_word(id, off / 8), got;
        memcpy(&got, p + off, 8);
        if (got != w) {
            for (size_t i = off;; i++)
                if (p[i] != pattern_byte(id, i))
                    return (long)i;
        }
    }
    for (; off < to; off++)
        if (p[off] != pattern_byte(id, off))
            return (long)off;
    return -1;
}

/* The id a block says it carries (its first min(n, 8) bytes, the rest taken from
 * expect), so a mismatch can say "this block holds block X's data". */
static inline uint64_t pattern_stored_id(const unsigned char *p, size_t n, uint64_t expect)
{
    uint64_t id = expect;
    memcpy(&id, p, n < 8 ? n : 8);
    return id;
}

/* Verify a whole block against its id; on a mismatch fail naming who wrote what. */
#define REQUIRE_PATTERN(p, n, id, what)                                                  \
    do {                                                                                 \
        const unsigned char *p_ = (const unsigned char *)(p);                            \
        size_t n_ = (n);                                                                 \
        uint64_t id_ = (id);                                                             \
        long bad_ = pattern_check(p_, 0, n_, id_);                                       \
        if (bad_ >= 0)                                                                   \
            fail_at(__FILE__, __LINE__, "pattern intact",                                \
                    " %s: block %p size %zu id %#llx: byte %ld is %#x, want %#x "        \
                    "(block's first bytes say id %#llx)", (what), (const void *)p_, n_,  \
                    (unsigned long long)id_, bad_, p_[bad_], pattern_byte(id_, (size_t)bad_), \
                    (unsigned long long)pattern_stored_id(p_, n_, id_));                 \
    } while (0)

/* ---- the allocator in use ------------------------------------------------------------- */

/* File name of the object whose malloc this program calls: the preload library, libc,
 * or (under a sanitizer) the program itself. */
static inline const char *allocator_object(void)
{
    Dl_info info;
    void *(*volatile fn)(size_t) = malloc;
    if (dladdr((void *)fn, &info) == 0 || info.dli_fname == NULL)
        return "unknown";
    return info.dli_fname;
}

/* ---- watchdog -------------------------------------------------------------------------- */

/* A once-a-second SIGALRM checks that `watchdog_progress` moved. If it stood still for
 * `stall` seconds, or the whole run passed `deadline` seconds, the handler names the
 * phase, calls kill_children_hook (to take hung children down with it) and
 * _exits(3): a deadlock becomes a failure instead of a hang. The handler uses only
 * async-signal-safe calls, and runs even when the interrupted thread is stuck on a lock
 * (futex waits are interruptible). alarm() is per process, so SIGALRM is reserved for
 * the watchdog; it is not inherited by fork()ed children. */
static atomic_ulong watchdog_progress;                 /* bump with watchdog_bump() */
static _Atomic(const char *) watchdog_phase = "start";   /* what the program is doing */
static unsigned watchdog_stall_limit, watchdog_deadline, watchdog_elapsed, watchdog_stalled;
static unsigned long watchdog_last;

static inline void watchdog_bump(void)
{
    atomic_fetch_add_explicit(&watchdog_progress, 1, memory_order_relaxed);
}

static inline void watchdog_set_phase(const char *phase)
{
    atomic_store_explicit(&watchdog_phase, phase, memory_order_relaxed);
}

static inline void watchdog_tick(int sig)
{
    (void)sig;
    int saved = errno;
    watchdog_elapsed++;
    unsigned long progress = atomic_load_explicit(&watchdog_progress, memory_order_relaxed);
    if (progress != watchdog_last) {
        watchdog_last = progress;
        watchdog_stalled = 0;
    } else {
        watchdog_stalled++;
    }
    if (watchdog_stalled >= watchdog_stall_limit || watchdog_elapsed >= watchdog_deadline) {
        char a[24], b[24];
        write_str(2, "FAIL ");
        write_str(2, prog_name);
        write_str(2, watchdog_stalled >= watchdog_stall_limit ? " watchdog: no progress for "
                                                               : " watchdog: run exceeded ");
        write_str(2, fmt_u64(a, watchdog_stalled >= watchdog_stall_limit ? watchdog_stalled
                                                                         : watchdog_elapsed));
        write_str(2, " s (deadlock?) in phase '");
        write_str(2, atomic_load_explicit(&watchdog_phase, memory_order_relaxed));
        write_str(2, "', progress counter ");
        write_str(2, fmt_u64(b, progress));
        write_str(2, "\n");
        if (kill_children_hook != NULL)
            kill_children_hook();
        _exit(3);
    }
    alarm(1);
    errno = saved;
}

static inline void watchdog_start(unsigned stall_seconds, unsigned deadline_seconds)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = watchdog_tick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    watchdog_stall_limit = stall_seconds;
    watchdog_deadline = deadline_seconds;
    alarm(1);
}

static inline void watchdog_stop(void)
{
    alarm(0);
}

#endif
