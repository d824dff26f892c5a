/* trace.c - the recorder of the LD_PRELOAD library: every allocation call into a raw
 * trace file (trace=PATH), and the size-class profile of the live heap at its peak
 * (profile=PATH). The record format and the ordering rules are in trace.h.
 *
 * Nothing here allocates or touches stdio: records go into a static buffer under a lock
 * and reach the file through os.c in writes of PRMI_REC_BUFFER records, and at exit.
 *
 * fork: the child stops recording. Its copy of the buffer holds the parent's unwritten
 * records and its descriptor shares the parent's file offset, so anything it wrote
 * would interleave with the parent's stream. A program the child execs starts afresh:
 * with "%p" in the path it records into a file of its own; without, the trace file is
 * created exclusively (O_EXCL), so a later process can never truncate an earlier one's
 * trace; it says so on stderr and records nothing.
 *
 * "Steady state", for the profile: the composition of the live heap when it was at its
 * largest. The recorder keeps the live chunks per size class and copies them into a
 * snapshot whenever the live bytes pass the last snapshot's by more than 1/32 (at least
 * 4 KiB), so the snapshot is the heap within 3% of its peak at a cost of one copy per
 * 3% of growth. */
#include <string.h>

#include "internal.h"
#include "prm.h"
#include "trace.h"

prmi_recorder prmi_rec = { .fd = -1 };

/* This thread's number in the trace plus one (0: none yet). */
static __thread uint32_t rec_thread;
/* The block of this thread's realloc in progress, from its begin to its end record. */
static __thread void *rec_realloc_old;

static void say(const char *a, const char *b)
{
    prm_os_write_stderr(a, strlen(a));
    if (b != NULL)
        prm_os_write_stderr(b, strlen(b));
    prm_os_write_stderr("\n", 1);
}

/* "%p" in a path becomes the pid, as in stats=PATH. */
static void expand_path(const char *pattern, char *out, size_t capacity)
{
    prmi_text t = { out, capacity, 0 };
    out[0] = '\0';
    for (const char *c = pattern; *c != '\0'; c++) {
        if (c[0] == '%' && c[1] == 'p') {
            prmi_text_dec(&t, (uint64_t)prm_os_pid());
            c++;
        } else {
            char one[2] = { *c, '\0' };
            prmi_text_str(&t, one);
        }
    }
}

/* ---- the trace ---------------------------------------------------------------------- */

static void stop_tracing(const char *why)
{
    prmi_rec.tracing = 0;
    prmi_rec.active = prmi_rec.profiling;
    if (!prmi_rec.complained) {
        prmi_rec.complained = 1;
        say("pymalloc_real: trace: ", why);
    }
}

/* Under the lock. */
static void flush_locked(void)
{
    if (prmi_rec.used == 0 || prmi_rec.fd < 0)
        return;
    size_t bytes = prmi_rec.used * sizeof(prmi_rec_record);
    prmi_rec.used = 0;
    if (prm_os_write_all(prmi_rec.fd, prmi_rec.buffer, bytes) != 0)
        stop_tracing("writing the trace failed; recording stopped");
}

static void append(int op, unsigned align_log2, uintptr_t address, size_t size)
{
    /* A signal handler that allocates while this thread holds the lock would wait for
     * itself forever: its record is lost instead (the loader then reports the address). */
    if (prm_unlikely(prm_lock_held_by_me(&prmi_rec.lock)))
        return;
    prm_lock_acquire(&prmi_rec.lock);
    if (prm_likely(prmi_rec.tracing)) {
        /* Numbered under the lock, so numbers follow the order of first records. */
        uint32_t thread = rec_thread;
        if (prm_unlikely(thread == 0))
            rec_thread = thread = ++prmi_rec.threads;
        prmi_rec_record *r = &prmi_rec.buffer[prmi_rec.used++];
        r->op = (uint8_t)op;
        r->align_log2 = (uint8_t)align_log2;
        r->thread = (uint16_t)(thread - 1 < 0xffff ? thread - 1 : 0xffff);
        r->reserved = 0;
        r->address = address;
        r->size = size;
        if (prmi_rec.used == PRMI_REC_BUFFER || prmi_rec.finished)
            flush_locked();
    }
    prm_lock_release(&prmi_rec.lock);
}

static int open_trace(const char *value, size_t length)
{
    if (length == 0 || length >= sizeof prmi_rec.trace_path)
        return 0;
    char pattern[sizeof prmi_rec.trace_path];
    memcpy(pattern, value, length);
    pattern[length] = '\0';
    expand_path(pattern, prmi_rec.trace_path, sizeof prmi_rec.trace_path);
    int fd = prm_os_open_output(prmi_rec.trace_path, 1);
    if (fd < 0) {
        say(errno == EEXIST ? "pymalloc_real: trace: the file exists (put %p in the path for "
                              "one file per process), not recording this process: "
                            : "pymalloc_real: trace: cannot create ", prmi_rec.trace_path);
        return 1;   /* the option was fine; this process just does not record */
    }
    struct { char magic[8]; uint32_t record_size; uint32_t pid; } header = {
        { 'P', 'R', 'M', 'R', 'A', 'W', '0', '1' }, sizeof(prmi_rec_record),
        (uint32_t)prm_os_pid() };
    if (prm_os_write_all(fd, &header, sizeof header) != 0) {
        say("pymalloc_real: trace: cannot write ", prmi_rec.trace_path);
        prm_os_close(fd);
        return 1;
    }
    prmi_rec.fd = fd;
    prmi_rec.tracing = 1;
    prmi_rec.active = 1;
    return 1;
}

/* ---- the profile ---------------------------------------------------------------------- */

static unsigned size_class(size_t usable)
{
    size_t chunk = usable + PRM_SIZE_SZ;
    if (chunk <= 1024) {
        size_t index = (chunk + 15) / 16;
        return index < 2 ? 0 : (unsigned)(index - 2);
    }
    unsigned bits = 64 - (unsigned)__builtin_clzll((unsigned long long)(chunk - 1));
    return PRMI_PROFILE_SMALL + (bits - 11);
}

/* The largest chunk size of a class. */
static uint64_t class_limit(unsigned index)
{
    if (index < PRMI_PROFILE_SMALL)
        return (uint64_t)(index + 2) * 16;
    unsigned bits = index - PRMI_PROFILE_SMALL + 11;
    return bits >= 64 ? UINT64_MAX : (uint64_t)1 << bits;
}

static PRM_NOINLINE void take_snapshot(uint64_t now)
{
    if (prm_lock_held_by_me(&prmi_rec.lock))    /* a signal handler's allocation: later */
        return;
    prm_lock_acquire(&prmi_rec.lock);
    if (now > prmi_rec.snapshot_bytes) {
        for (unsigned i = 0; i < PRMI_PROFILE_CLASSES; i++)
            prmi_rec.snapshot[i] = __atomic_load_n(&prmi_rec.live[i], __ATOMIC_RELAXED);
        prmi_rec.snapshot_bytes = now;
        uint64_t step = now / 32 > 4096 ? now / 32 : 4096;
        __atomic_store_n(&prmi_rec.next_snapshot, now + step, __ATOMIC_RELAXED);
    }
    prm_lock_release(&prmi_rec.lock);
}

static void profile_live(void *mem, int sign)
{
    size_t usable = prmi_usable_size_trusted(mem);
    unsigned index = size_class(usable);
    if (sign < 0) {
        __atomic_fetch_sub(&prmi_rec.live[index], 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&prmi_rec.live_bytes, usable, __ATOMIC_RELAXED);
        return;
    }
    __atomic_fetch_add(&prmi_rec.live[index], 1, __ATOMIC_RELAXED);
    uint64_t now = __atomic_add_fetch(&prmi_rec.live_bytes, usable, __ATOMIC_RELAXED);
    if (prm_unlikely(now > __atomic_load_n(&prmi_rec.next_snapshot, __ATOMIC_RELAXED)))
        take_snapshot(now);
}

static int set_profile(const char *value, size_t length)
{
    if (length == 0 || length >= sizeof prmi_rec.profile_path)
        return 0;
    memcpy(prmi_rec.profile_path, value, length);
    prmi_rec.profile_path[length] = '\0';
    prmi_rec.profiling = 1;
    prmi_rec.active = 1;
    return 1;
}

static void line(prmi_text *t, const char *key, uint64_t value)
{
    prmi_text_str(t, key);
    prmi_text_str(t, " ");
    prmi_text_dec(t, value);
    prmi_text_str(t, "\n");
}

static void write_profile(void)
{
    static char text[8192];
    prmi_text t = { text, sizeof text, 0 };
    prm_arena *main_arena = &prmi_state.main_arena;
    prm_stats s;
    prm_get_stats(&s);
    prmi_text_str(&t, "# pymalloc_real profile 1: the live heap at its peak, by chunk size class\n"
                      "# (class LIMIT COUNT: COUNT live chunks of at most LIMIT bytes)\n");
    line(&t, "pid", (uint64_t)prm_os_pid());
    line(&t, "heap_peak", main_arena->max_system_bytes);
    line(&t, "mmapped_peak", s.max_hblkhd);
    line(&t, "peak_live", prmi_rec.snapshot_bytes);
    line(&t, "presized", prmi_presized_bytes());
    for (unsigned i = 0; i < PRMI_PROFILE_CLASSES; i++) {
        if (prmi_rec.snapshot[i] <= 0)
            continue;
        prmi_text_str(&t, "class ");
        prmi_text_dec(&t, class_limit(i));
        line(&t, "", (uint64_t)prmi_rec.snapshot[i]);
    }
    char path[sizeof prmi_rec.profile_path + 24];
    expand_path(prmi_rec.profile_path, path, sizeof path);
    if (prm_os_write_file(path, text, t.length) != 0)
        say("pymalloc_real: profile: cannot write ", path);
}

/* ---- the hooks ---------------------------------------------------------------------------- */

static unsigned log2_ceil(size_t alignment)
{
    if (alignment <= 1)
        return 0;
    return 64 - (unsigned)__builtin_clzll((unsigned long long)(alignment - 1));
}

void prmi_rec_alloc(int op, void *result, size_t size, size_t alignment)
{
    if (prmi_rec.profiling && result != NULL)
        profile_live(result, +1);
    if (prmi_rec.tracing)
        append(op, log2_ceil(alignment), (uintptr_t)result, size);
}

void prmi_rec_free(void *mem)
{
    if (mem == NULL)
        return;
    if (prmi_rec.profiling)
        profile_live(mem, -1);
    if (prmi_rec.tracing)
        append(PRMI_REC_FREE, 0, (uintptr_t)mem, 0);
}

/* realloc is two records: the old block is let go before the core call (another thread
 * may get its address as soon as the core frees it) and the result taken after. The
 * profile counts the old block out and the result in; a failed realloc (NULL for a
 * nonzero size) leaves the old block live, so it is counted back in. */
void prmi_rec_realloc_begin(void *mem, size_t size)
{
    rec_realloc_old = mem;
    if (prmi_rec.profiling && mem != NULL)
        profile_live(mem, -1);
    if (prmi_rec.tracing)
        append(PRMI_REC_REALLOC, 0, (uintptr_t)mem, size);
}

void prmi_rec_realloc_end(void *result, size_t size)
{
    void *old = rec_realloc_old;
    rec_realloc_old = NULL;
    if (prmi_rec.profiling) {
        if (result != NULL)
            profile_live(result, +1);
        else if (old != NULL && size != 0)      /* failed: the old block is still live */
            profile_live(old, +1);
    }
    if (prmi_rec.tracing)
        append(PRMI_REC_REALLOC_END, 0, (uintptr_t)result, size);
}

int prmi_rec_option(const char *key, size_t key_length, const char *value, size_t value_length)
{
    if (key_length == 5 && memcmp(key, "trace", 5) == 0)
        return open_trace(value, value_length);
    if (key_length == 7 && memcmp(key, "profile", 7) == 0)
        return set_profile(value, value_length);
    if (key_length == 7 && memcmp(key, "presize", 7) == 0)
        return prmi_presize_option(value, value_length);
    return -1;
}

void prmi_rec_finish(void)
{
    if (prmi_rec.tracing) {
        prm_lock_acquire(&prmi_rec.lock);
        flush_locked();
        prmi_rec.finished = 1;
        prm_lock_release(&prmi_rec.lock);
    }
    if (prmi_rec.profiling)
        write_profile();
}

/* The fork child (threads.c's handler): stop recording, see the header comment. The
 * lock may have been held by a thread that does not exist here: reset, not released. */
void prmi_rec_fork_child(void)
{
    prm_lock_reset(&prmi_rec.lock);
    prmi_rec.tracing = 0;
    prmi_rec.used = 0;
    prmi_rec.fd = -1;           /* the parent's descriptor: never ours to write or close */
    prmi_rec.active = prmi_rec.profiling;
    rec_thread = 0;
}
