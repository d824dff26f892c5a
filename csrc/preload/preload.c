/* preload.c - the LD_PRELOAD shim: the standard allocation symbols over the prm_ core,
 * options from the environment, and the statistics written at exit. No allocation
 * logic lives here.
 *
 * Bootstrap: the core initialises itself on first use without allocating, without
 * dlsym and without pthread, so the first malloc (possibly from another library's
 * constructor, before ours ran) is served like any other; no bootstrap buffer is
 * needed. Options are read then, from `environ` directly (getenv may not be usable
 * yet), through prmi_configure. The library builds with initial-exec TLS.
 *
 * Options: PYMALLOC_REAL_OPTIONS="key=value,key=value", documented in README.md.
 * Unknown keys and bad values are reported on stderr and ignored (defaults stay). */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "hardened.h"
#include "prm.h"
#include "trace.h"

#define PRM_EXPORT __attribute__((visibility("default")))

extern char **environ;

/* ---- statistics for the exit report (only counted when stats=PATH is set) ----------- */

enum prm_call {
    CALL_MALLOC, CALL_FREE, CALL_CALLOC, CALL_REALLOC, CALL_REALLOCARRAY, CALL_MEMALIGN,
    CALL_POSIX_MEMALIGN, CALL_ALIGNED_ALLOC, CALL_VALLOC, CALL_PVALLOC, CALL_COUNT
};

static const char *const call_names[CALL_COUNT] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc",
};

#define SIZE_CLASSES 64   /* by the bit length of the request: 0, 1, 2-3, 4-7, ... */

typedef struct exit_report {
    int enabled;
    char path[1024];
    uint64_t calls[CALL_COUNT];
    uint64_t bytes_requested;
    uint64_t size_classes[SIZE_CLASSES];
    uint64_t live_bytes;        /* usable bytes of live blocks */
    uint64_t peak_live_bytes;
} exit_report;

static exit_report report;

/* The counters' layout, for the live view (core/publish.c): `top PID` shows them while
 * the program runs. "call.NAME" rows give each call's index in calls[]. */
#define REPORT_FIELD(member) { "report." #member, (uint32_t)offsetof(exit_report, member), \
                               (uint32_t)sizeof(((exit_report *)0)->member) }
static const prm_live_field report_fields[] = {
    REPORT_FIELD(enabled), REPORT_FIELD(calls), REPORT_FIELD(bytes_requested),
    REPORT_FIELD(size_classes), REPORT_FIELD(live_bytes), REPORT_FIELD(peak_live_bytes),
    { "call.malloc", CALL_MALLOC, 0 }, { "call.free", CALL_FREE, 0 },
    { "call.calloc", CALL_CALLOC, 0 }, { "call.realloc", CALL_REALLOC, 0 },
    { "call.reallocarray", CALL_REALLOCARRAY, 0 }, { "call.memalign", CALL_MEMALIGN, 0 },
    { "call.posix_memalign", CALL_POSIX_MEMALIGN, 0 },
    { "call.aligned_alloc", CALL_ALIGNED_ALLOC, 0 }, { "call.valloc", CALL_VALLOC, 0 },
    { "call.pvalloc", CALL_PVALLOC, 0 },
};

/* An allocating call and the size it asked for. */
static inline void count_call(enum prm_call call, size_t requested)
{
    __atomic_fetch_add(&report.calls[call], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&report.bytes_requested, requested, __ATOMIC_RELAXED);
    unsigned cls = requested == 0 ? 0 : 64 - (unsigned)__builtin_clzll(requested);
    __atomic_fetch_add(&report.size_classes[cls < SIZE_CLASSES ? cls : SIZE_CLASSES - 1], 1,
                       __ATOMIC_RELAXED);
}

static inline void count_live(void *mem, int sign)
{
    if (mem == NULL)
        return;
    uint64_t usable = prmi_usable_size_trusted(mem);
    if (sign < 0) {
        __atomic_fetch_sub(&report.live_bytes, usable, __ATOMIC_RELAXED);
        return;
    }
    uint64_t now = __atomic_add_fetch(&report.live_bytes, usable, __ATOMIC_RELAXED);
    uint64_t peak = __atomic_load_n(&report.peak_live_bytes, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&report.peak_live_bytes, &peak, now, 1,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* Every allocating entry point: count the call (when reporting) and record it (when
 * tracing or profiling: `record`, an expression of result_, see trace.h) around the core
 * call. With neither, one test and the core call. */
#define ALLOCATE(call, requested, expression, record)           \
    do {                                                        \
        if (prm_likely(!(prmi_rec.hooks)))    \
            return expression;                                  \
        if (report.enabled)                                     \
            count_call(call, requested);                        \
        /* On the stack, not in a callee-saved register: that   \
         * would put a prologue on the fast path too. */        \
        volatile size_t requested_ = (requested);               \
        void *result_ = expression;                             \
        if (report.enabled)                                     \
            count_live(result_, +1);                            \
        if (prmi_rec.active)                                    \
            record;                                             \
        return result_;                                         \
    } while (0)
#define RECORD(op, alignment) prmi_rec_alloc(op, result_, requested_, alignment)

/* ---- options ------------------------------------------------------------------------ */

/* One line on stderr: what was wrong with an option, the option itself, and what is
 * valid (`valid`, or NULL). */
static void complain(const char *what, const char *option, size_t length, const char *valid)
{
    char line[512];
    prmi_text t = { line, sizeof line, 0 };
    char quoted[96];
    size_t n = length < sizeof quoted - 1 ? length : sizeof quoted - 1;
    memcpy(quoted, option, n);
    quoted[n] = '\0';
    prmi_text_str(&t, "pymalloc_real: PYMALLOC_REAL_OPTIONS: ");
    prmi_text_str(&t, what);
    prmi_text_str(&t, " '");
    prmi_text_str(&t, quoted);
    prmi_text_str(&t, "' ignored");
    if (valid != NULL) {
        prmi_text_str(&t, ": ");
        prmi_text_str(&t, valid);
    }
    prmi_text_str(&t, "\n");
    prm_os_write_stderr(line, t.length);
}

/* The numeric keys, their mallopt parameter and valid values; the Python side checks
 * the same ranges before a run (pymalloc_real/preload/options.py, OPTION_RANGES). */
static const struct option_key {
    const char *name;
    int param;
    long min, max;
    const char *valid;
} option_keys[] = {
    { "mxfast", PRM_M_MXFAST, 0, 160, "give a size from 0 to 160" },
    { "trim_threshold", PRM_M_TRIM_THRESHOLD, -1, LONG_MAX, "give a size, or -1 for never" },
    { "top_pad", PRM_M_TOP_PAD, 0, LONG_MAX, "give a size" },
    { "mmap_threshold", PRM_M_MMAP_THRESHOLD, 0, 32L << 20, "give a size from 0 to 32M" },
    { "mmap_max", PRM_M_MMAP_MAX, 0, 0x7fffffff, "give a count from 0 to 2147483647" },
    { "check_action", PRM_M_CHECK_ACTION, 0, 7, "give M_CHECK_ACTION's bits, 0 to 7" },
    { "perturb", PRM_M_PERTURB, 0, 255, "give a byte from 0 to 255" },
    { "canary", PRM_M_CANARY, 0, 1, "give 0 or 1" },
    { "hardened", PRM_M_HARDENED, 0, 1, "give 0 or 1" },
    { "arena_test", PRM_M_ARENA_TEST, 1, LONG_MAX, "give a count of at least 1" },
    { "arena_max", PRM_M_ARENA_MAX, 1, LONG_MAX, "give a count of at least 1" },
    { "tcache_count", PRM_TCACHE_COUNT, 0, 65535, "give a count from 0 to 65535" },
    { "tcache_grow", PRM_TCACHE_GROW, 0, 1, "give 0 or 1" },
};

/* A decimal (or 0x hex) integer with an optional K, M or G suffix (powers of 1024). */
int prmi_parse_number(const char *text, size_t length, long *out)
{
    long value = 0;
    size_t i = 0;
    int base = 10, negative = 0;
    if (i < length && text[i] == '-') {
        negative = 1;
        i++;
    }
    if (i + 1 < length && text[i] == '0' && (text[i + 1] == 'x' || text[i + 1] == 'X')) {
        base = 16;
        i += 2;
    }
    size_t digits = 0;
    for (; i < length; i++, digits++) {
        char c = text[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : base == 16 && c >= 'a' && c <= 'f' ? c - 'a' + 10
              : base == 16 && c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            break;
        if (__builtin_mul_overflow(value, base, &value) || __builtin_add_overflow(value, d, &value))
            return 0;
    }
    if (digits == 0)
        return 0;
    if (i < length) {
        int shift = text[i] == 'k' || text[i] == 'K' ? 10 : text[i] == 'm' || text[i] == 'M' ? 20
                  : text[i] == 'g' || text[i] == 'G' ? 30 : -1;
        if (shift < 0 || i + 1 != length || value > (0x7fffffffffffffffL >> shift))
            return 0;
        value <<= shift;
    }
    *out = negative ? -value : value;
    return 1;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Does the directory part of `path` exist? Opening a directory works and reading it
 * fails with EISDIR, which tells it apart from a missing one (ENOENT, ENOTDIR). */
static int directory_exists(const char *path)
{
    char directory[sizeof report.path];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || memchr(path, '%', (size_t)(slash - path)) != NULL)
        return 1;           /* the current directory, or one named by the pid: not known yet */
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    memcpy(directory, path, n);
    directory[n] = '\0';
    char byte;
    int saved = errno;      /* the program's errno is not ours to change */
    int exists = prm_os_read_file(directory, &byte, 1) < 0 && errno == EISDIR;
    errno = saved;
    return exists;
}

static void apply_option(const char *item, size_t length)
{
    const char *equals = memchr(item, '=', length);
    if (equals == NULL) {
        complain("an option without '=':", item, length, "give key=value pairs separated by commas");
        return;
    }
    size_t key_length = (size_t)(equals - item);
    while (key_length > 0 && is_blank(item[key_length - 1]))   /* "key = value" */
        key_length--;
    const char *value = equals + 1;
    size_t value_length = length - (size_t)(value - item);
    while (value_length > 0 && is_blank(*value)) {
        value++;
        value_length--;
    }

    int recorder = prmi_rec_option(item, key_length, value, value_length);   /* trace.h */
    if (recorder >= 0) {
        if (recorder == 0)
            complain("a bad value:", item, length, "give a file that can be created (trace, "
                     "profile) or read (presize), stacks=sampled|all|off, or sample=BYTES "
                     "(at least 1)");
        return;
    }
    if (key_length == 5 && memcmp(item, "stats", 5) == 0) {
        if (value_length == 0 || value_length >= sizeof report.path) {
            complain("a bad stats path:", item, length, "give a file path shorter than 1 KiB");
            return;
        }
        memcpy(report.path, value, value_length);
        report.path[value_length] = '\0';
        if (!directory_exists(report.path)) {     /* say so now, not silently at exit */
            complain("a stats path in no existing directory:", item, length,
                     "give a file in an existing directory");
            return;
        }
        report.enabled = 1;
        __atomic_fetch_or(&prmi_rec.hooks, PRMI_HOOK_REPORT, __ATOMIC_RELAXED);
        return;
    }
    for (size_t k = 0; k < sizeof option_keys / sizeof option_keys[0]; k++) {
        const struct option_key *key = &option_keys[k];
        if (strlen(key->name) == key_length && memcmp(item, key->name, key_length) == 0) {
            long number;
            if (!prmi_parse_number(value, value_length, &number) || number < key->min ||
                number > key->max || !prmi_set_param(key->param, number))
                complain("a bad value:", item, length, key->valid);
            return;
        }
    }
    complain("an unknown key:", item, key_length, "the keys are mxfast, trim_threshold, "
             "top_pad, mmap_threshold, mmap_max, check_action, perturb, canary, hardened, "
             "arena_test, "
             "arena_max, tcache_count, tcache_grow, stats, trace, stacks, sample, profile, "
             "presize");
}

/* Called by the core while it initialises, before it serves the first allocation. */
void prmi_configure(void)
{
    static const char name[] = "PYMALLOC_REAL_OPTIONS=";
    static const char glibc_check[] = "MALLOC_CHECK_=";
    if (environ == NULL)
        return;
    /* glibc's variable first, a single digit with M_CHECK_ACTION's bits; check_action=
     * in our options overrides it. */
    for (char **entry = environ; *entry != NULL; entry++) {
        const char *value = *entry + sizeof glibc_check - 1;
        if (strncmp(*entry, glibc_check, sizeof glibc_check - 1) == 0 &&
            value[0] >= '0' && value[0] <= '7' && value[1] == '\0')
            prmi_set_param(PRM_M_CHECK_ACTION, value[0] - '0');
    }
    for (char **entry = environ; *entry != NULL; entry++) {
        if (strncmp(*entry, name, sizeof name - 1) != 0)
            continue;
        const char *item = *entry + sizeof name - 1;
        while (*item != '\0') {
            const char *comma = strchr(item, ',');
            size_t length = comma ? (size_t)(comma - item) : strlen(item);
            const char *next = item + length + (comma ? 1 : 0);
            while (length > 0 && is_blank(*item)) {      /* "a=1, b=2": spaces are no part */
                item++;
                length--;
            }
            while (length > 0 && is_blank(item[length - 1]))
                length--;
            if (length > 0)
                apply_option(item, length);
            item = next;
        }
        break;
    }
    prmi_presize_apply();   /* once every option is in: presize.c */
}

/* At load: initialise (so the options, and the exit report, apply even to a program
 * that never allocates) and register the fork handlers (registering may allocate, so
 * not from inside malloc). */
static __attribute__((constructor)) void at_load(void)
{
    prmi_main_arena();
    prm_install_fork_handlers();
    prmi_publish_report(&report, report_fields, sizeof report_fields / sizeof report_fields[0]);
}

/* ---- the exported allocation functions ------------------------------------------------ */

PRM_EXPORT void *malloc(size_t size)
{
    ALLOCATE(CALL_MALLOC, size, prm_malloc(size), RECORD(PRMI_REC_MALLOC, 0));
}

/* free counted or recorded, out of line: the plain path stays a test and a jump. */
static PRM_NOINLINE void free_observed(void *mem)
{
    if (report.enabled && mem != NULL) {
        __atomic_fetch_add(&report.calls[CALL_FREE], 1, __ATOMIC_RELAXED);
        count_live(mem, -1);
    }
    if (prmi_rec.active)
        prmi_rec_free(mem);     /* before the call: see trace.h */
    prm_free(mem);
}

PRM_EXPORT void free(void *mem)
{
    if (prm_unlikely(prmi_rec.hooks)) {
        free_observed(mem);
        return;
    }
    prm_free(mem);
}

PRM_EXPORT void *calloc(size_t count, size_t size)
{
    size_t bytes = 0;
    (void)__builtin_mul_overflow(count, size, &bytes);
    ALLOCATE(CALL_CALLOC, bytes, prm_calloc(count, size), RECORD(PRMI_REC_CALLOC, 0));
}

/* realloc counted or recorded, out of line: the plain path stays a test and a jump. */
static PRM_NOINLINE void *realloc_observed(void *mem, size_t size)
{
    if (report.enabled)
        count_live(mem, -1);
    if (prmi_rec.active)
        prmi_rec_realloc_begin(mem, size);
    ALLOCATE(CALL_REALLOC, size, prm_realloc(mem, size), prmi_rec_realloc_end(result_, requested_));
}

PRM_EXPORT void *realloc(void *mem, size_t size)
{
    if (prm_unlikely(prmi_rec.hooks))
        return realloc_observed(mem, size);
    return prm_realloc(mem, size);
}

PRM_EXPORT void *reallocarray(void *mem, size_t count, size_t size)
{
    size_t bytes = 0;
    int overflow = __builtin_mul_overflow(count, size, &bytes);
    if (prm_unlikely(report.enabled))
        count_live(mem, -1);
    if (prm_unlikely(prmi_rec.active))
        prmi_rec_realloc_begin(mem, overflow ? SIZE_MAX : bytes);
    ALLOCATE(CALL_REALLOCARRAY, bytes, prm_reallocarray(mem, count, size),
             prmi_rec_realloc_end(result_, overflow ? SIZE_MAX : requested_));
}

/* glibc's memalign takes any alignment: up to 16 it is plain malloc, and one that is
 * not a power of two is rounded up to the next power of two; only one beyond
 * SIZE_MAX / 2 + 1 is EINVAL (the core's check, as it is no power of two). The core and
 * the Python API insist on a power of two; aligned_alloc and posix_memalign keep their
 * stricter contracts (C17, glibc >= 2.38). */
static inline size_t memalign_alignment(size_t alignment)
{
    if (alignment <= PRM_ALIGN)
        return PRM_ALIGN;
    if ((alignment & (alignment - 1)) == 0 || alignment > SIZE_MAX / 2 + 1)
        return alignment;
    return (size_t)1 << (64 - __builtin_clzll(alignment));
}

PRM_EXPORT void *memalign(size_t alignment, size_t size)
{
    alignment = memalign_alignment(alignment);
    ALLOCATE(CALL_MEMALIGN, size, prm_memalign(alignment, size),
             RECORD(PRMI_REC_MEMALIGN, alignment));
}

PRM_EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (prm_unlikely(report.enabled))
        count_call(CALL_POSIX_MEMALIGN, size);
    int rc = prm_posix_memalign(out, alignment, size);
    if (prm_unlikely(report.enabled) && rc == 0)
        count_live(*out, +1);
    if (prm_unlikely(prmi_rec.active) && rc == 0)
        prmi_rec_alloc(PRMI_REC_MEMALIGN, *out, size, alignment);
    return rc;
}

PRM_EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    ALLOCATE(CALL_ALIGNED_ALLOC, size, prm_aligned_alloc(alignment, size),
             RECORD(PRMI_REC_MEMALIGN, alignment));
}

PRM_EXPORT void *valloc(size_t size)
{
    ALLOCATE(CALL_VALLOC, size, prm_valloc(size),
             RECORD(PRMI_REC_MEMALIGN, prm_os_page_size()));
}

/* pvalloc allocates whole pages: recorded as the size it really serves. */
PRM_EXPORT void *pvalloc(size_t size)
{
    ALLOCATE(CALL_PVALLOC, size, prm_pvalloc(size),
             prmi_rec_alloc(PRMI_REC_MEMALIGN, result_, align_up(requested_ ? requested_ : 1,
                                                                  prm_os_page_size()),
                            prm_os_page_size()));
}

PRM_EXPORT size_t malloc_usable_size(void *mem) { return prm_usable_size(mem); }

PRM_EXPORT int mallopt(int param, int value) { return prm_mallopt(param, value); }

PRM_EXPORT int malloc_trim(size_t pad) { return prm_malloc_trim(pad); }

/* glibc's internal names, which some programs and libraries call directly. */
PRM_EXPORT void *__libc_malloc(size_t size) __attribute__((alias("malloc"), copy(malloc)));
PRM_EXPORT void __libc_free(void *mem) __attribute__((alias("free"), copy(free)));
PRM_EXPORT void *__libc_calloc(size_t count, size_t size) __attribute__((alias("calloc"), copy(calloc)));
PRM_EXPORT void *__libc_realloc(void *mem, size_t size) __attribute__((alias("realloc"), copy(realloc)));
PRM_EXPORT void *__libc_memalign(size_t alignment, size_t size) __attribute__((alias("memalign"), copy(memalign)));

/* ---- glibc's reporting functions ---------------------------------------------------- */

PRM_EXPORT struct mallinfo2 mallinfo2(void)
{
    prm_stats s;
    prm_get_stats(&s);
    struct mallinfo2 info = {
        .arena = s.arena, .ordblks = s.ordblks, .smblks = s.smblks, .hblks = s.hblks,
        .hblkhd = s.hblkhd, .usmblks = s.usmblks, .fsmblks = s.fsmblks,
        .uordblks = s.uordblks, .fordblks = s.fordblks, .keepcost = s.keepcost,
    };
    return info;
}

/* The legacy interface: glibc's struct mallinfo has int fields, and glibc fills them
 * from mallinfo2 by plain conversion, which truncates to the low 32 bits (GCC's
 * conversion to int); so does this, so that a program sees the same numbers on both. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
PRM_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 wide = mallinfo2();
    struct mallinfo info = {
        .arena = (int)wide.arena, .ordblks = (int)wide.ordblks, .smblks = (int)wide.smblks,
        .hblks = (int)wide.hblks, .hblkhd = (int)wide.hblkhd, .usmblks = (int)wide.usmblks,
        .fsmblks = (int)wide.fsmblks, .uordblks = (int)wide.uordblks,
        .fordblks = (int)wide.fordblks, .keepcost = (int)wide.keepcost,
    };
    return info;
}
#pragma GCC diagnostic pop

static void text_line(prmi_text *t, const char *label, uint64_t value)
{
    prmi_text_str(t, label);
    prmi_text_dec(t, value);
    prmi_text_str(t, "\n");
}

/* glibc's format, to stderr, with one raw write (os.c): no stdio, which could call
 * malloc, and no cancellation point, so a thread with a cancellation pending prints the
 * whole report, as glibc's does. No lock is held while it writes. */
PRM_EXPORT void malloc_stats(void)
{
    prm_stats s;
    prm_get_stats(&s);
    char buffer[512];
    prmi_text t = { buffer, sizeof buffer, 0 };
    prmi_text_str(&t, "Arena 0:\n");
    text_line(&t, "system bytes     = ", s.arena);
    text_line(&t, "in use bytes     = ", s.uordblks);
    prmi_text_str(&t, "Total (incl. mmap):\n");
    text_line(&t, "system bytes     = ", s.arena + s.hblkhd);
    text_line(&t, "in use bytes     = ", s.uordblks + s.hblkhd);
    text_line(&t, "max mmap regions = ", s.max_hblks);
    text_line(&t, "max mmap bytes   = ", s.max_hblkhd);
    prm_os_write_stderr(buffer, t.length);
}

/* glibc's XML shape, reduced to what the core knows. Statistics are taken first, then
 * printed with stdio outside every allocator lock (stdio may allocate). */
PRM_EXPORT int malloc_info(int options, FILE *out)
{
    if (options != 0) {
        errno = EINVAL;
        return -1;
    }
    prm_stats s;
    prm_get_stats(&s);
    fprintf(out, "<malloc version=\"1\">\n<heap nr=\"0\">\n"
            "<total type=\"fast\" count=\"%zu\" size=\"%zu\"/>\n"
            "<total type=\"rest\" count=\"%zu\" size=\"%zu\"/>\n"
            "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
            "</heap>\n"
            "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
            "<system type=\"current\" size=\"%zu\"/>\n<system type=\"max\" size=\"%zu\"/>\n"
            "</malloc>\n",
            s.smblks, s.fsmblks, s.ordblks, s.fordblks - s.fsmblks, s.arena, s.max_arena,
            s.hblks, s.hblkhd, s.arena + s.hblkhd, s.max_arena + s.max_hblkhd);
    return 0;
}

/* ---- the exit report -------------------------------------------------------------------- */

static void json_number(prmi_text *t, const char *key, uint64_t value, int last)
{
    prmi_text_str(t, "\"");
    prmi_text_str(t, key);
    prmi_text_str(t, "\": ");
    prmi_text_dec(t, value);
    prmi_text_str(t, last ? "" : ", ");
}

/* JSON written with the core's text helpers and one write(2) loop, so the report
 * neither allocates nor touches stdio while the program is exiting. */
static __attribute__((destructor)) void write_exit_report(void)
{
    /* A write after free is reported at exit at the latest: over a block in the quarantine,
     * or over the links of one in this thread's cache. */
    if (params()->hardened)
        prmi_quarantine_check_all();
    else
        prmi_tcache_check();
    prmi_rec_finish();   /* the trace's last records and the profile (trace.c) */
    if (!report.enabled)
        return;
    static char buffer[8192];
    prmi_text t = { buffer, sizeof buffer, 0 };
    prm_stats s;
    prm_get_stats(&s);

    prmi_text_str(&t, "{\"allocator\": \"pymalloc_real\", ");
    json_number(&t, "pid", (uint64_t)prm_os_pid(), 0);
    prmi_text_str(&t, "\"calls\": {");
    for (int c = 0; c < CALL_COUNT; c++)
        json_number(&t, call_names[c], __atomic_load_n(&report.calls[c], __ATOMIC_RELAXED),
                    c == CALL_COUNT - 1);
    prmi_text_str(&t, "}, ");
    json_number(&t, "bytes_requested", report.bytes_requested, 0);
    json_number(&t, "peak_in_use", report.peak_live_bytes, 0);
    json_number(&t, "in_use_at_exit", s.in_use_bytes, 0);
    json_number(&t, "peak_from_os", s.max_arena + s.max_hblkhd, 0);
    json_number(&t, "heap_bytes", s.arena, 0);
    json_number(&t, "mmapped_bytes", s.hblkhd, 0);
    json_number(&t, "brk_moves", s.brk_moves, 0);
    json_number(&t, "mmap_calls", s.mmap_calls, 0);
    json_number(&t, "munmap_calls", s.munmap_calls, 0);
    json_number(&t, "mremap_calls", s.mremap_calls, 0);
    json_number(&t, "trims", s.trims, 0);
    json_number(&t, "segments", s.segments, 0);
    json_number(&t, "arenas", s.arenas, 0);
    json_number(&t, "remote_frees", s.remote_frees, 0);
    json_number(&t, "remote_pending", s.remote_pending, 0);
    json_number(&t, "tcache_count", (uint64_t)s.tcache_count, 0);
    json_number(&t, "tcache_grow", (uint64_t)s.tcache_grow, 0);
    json_number(&t, "tcache_raises", s.tcache_raises, 0);
    json_number(&t, "tcache_drains", s.tcache_drains, 0);
    json_number(&t, "tcache_fills", s.tcache_fills, 0);
    json_number(&t, "pagemap_bytes", s.pagemap_bytes, 0);
    json_number(&t, "mmap_threshold", s.mmap_threshold, 0);
    json_number(&t, "trim_threshold", s.trim_threshold, 0);
    prmi_text_str(&t, "\"size_classes\": {");
    int first = 1;
    for (int c = 0; c < SIZE_CLASSES; c++) {
        uint64_t n = __atomic_load_n(&report.size_classes[c], __ATOMIC_RELAXED);
        if (n == 0)
            continue;
        char key[24];
        prmi_text k = { key, sizeof key, 0 };
        prmi_text_str(&k, "<=");
        prmi_text_dec(&k, c == 0 ? 0 : c >= 64 ? UINT64_MAX : (((uint64_t)1 << c) - 1));
        prmi_text_str(&t, first ? "" : ", ");
        json_number(&t, key, n, 1);
        first = 0;
    }
    prmi_text_str(&t, "}}\n");
    /* "%p" in the path becomes the pid, so every process of a run keeps its own report. */
    char path[sizeof report.path + 24];
    prmi_text p = { path, sizeof path, 0 };
    for (const char *c = report.path; *c != '\0'; c++) {
        if (c[0] == '%' && c[1] == 'p') {
            prmi_text_dec(&p, (uint64_t)prm_os_pid());
            c++;
        } else {
            char one[2] = { *c, '\0' };
            prmi_text_str(&p, one);
        }
    }
    if (prm_os_write_file(path, buffer, t.length) != 0) {
        char line[sizeof path + 64];
        prmi_text m = { line, sizeof line, 0 };
        prmi_text_str(&m, "pymalloc_real: could not write the stats file ");
        prmi_text_str(&m, path);
        prmi_text_str(&m, "\n");
        prm_os_write_stderr(line, m.length);
    }
}
