/* trace.c - the recorder of the LD_PRELOAD library: every allocation call into a
 * compact trace file (trace=PATH) with the call stacks of every or of sampled
 * allocations (stacks=, sample=; capturing and numbering them is callstack.c's), the
 * timeline's samples (every 10 ms and at each move of the heap or the mapped chunks),
 * the command line and the maps at exit; and the size-class profile of the live heap at
 * its peak (profile=PATH). The record format and the ordering rules are in trace.h.
 *
 * Nothing here allocates or touches stdio: records go into a static buffer under a lock
 * and reach the file through os.c in writes of PRMI_REC_BUFFER bytes, and at exit. A
 * stack is captured before the lock is taken (libunwind's walk is the slow part and
 * takes the loader's lock on a cache miss: never under ours).
 *
 * exec: a process keeps its pid, so with "%p" in the path each program it becomes
 * records into the next free PID.N (open_trace), and its first record names it.
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
#include "callstack.h"

prmi_recorder prmi_rec = { .fd = -1, .stacks = PRMI_STACKS_SAMPLED,
                          .sample_mean = 512 * 1024 };

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

/* ---- the trace ---------------------------------------------------------------------- */

static void stop_tracing(const char *why)
{
    prmi_rec.tracing = 0;
    prmi_rec_set_active(prmi_rec.profiling);
    if (!prmi_rec.complained) {
        prmi_rec.complained = 1;
        say("pymalloc_real: trace: ", why);
    }
}

/* Under the lock. */
static PRM_NOINLINE void flush_locked(void)
{
    if (prmi_rec.used == 0 || prmi_rec.fd < 0)
        return;
    size_t bytes = prmi_rec.used;
    prmi_rec.used = 0;
    if (prm_os_write_all(prmi_rec.fd, prmi_rec.buffer, bytes) != 0)
        stop_tracing("writing the trace failed; recording stopped");
}

static inline void put_byte(unsigned value)
{
    prmi_rec.buffer[prmi_rec.used++] = (unsigned char)value;
}

static inline void put_varint(uint64_t value)
{
    unsigned char *out = prmi_rec.buffer + prmi_rec.used;
    while (value >= 0x80) {
        *out++ = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    *out++ = (unsigned char)value;
    prmi_rec.used = (size_t)(out - prmi_rec.buffer);
}

static inline uint64_t zigzag(int64_t value)
{
    return ((uint64_t)value << 1) ^ (uint64_t)(value >> 63);
}

/* Room for one more record of any kind; under the lock. */
static inline void make_room(void)
{
    if (prm_unlikely(prmi_rec.used > PRMI_REC_BUFFER - PRMI_REC_ROOM))
        flush_locked();
}

/* Text (the command line, the maps) as an extension record, in pieces the buffer holds:
 * flushed first, then written straight from `text`. Under the lock. */
static void put_text(unsigned which, const char *text, size_t length)
{
    make_room();
    put_byte(PRMI_EXT_TEXT << 3);
    put_byte(which);
    put_varint(length);
    flush_locked();
    if (prmi_rec.fd >= 0 && length > 0 && prm_os_write_all(prmi_rec.fd, text, length) != 0)
        stop_tracing("writing the trace failed; recording stopped");
}

static PRM_NOINLINE void write_header_locked(void)
{
    prmi_rec.header_written = 1;
    if (prmi_rec.stacks != PRMI_STACKS_OFF && prmi_stack_table_setup() != 0) {
        say("pymalloc_real: trace: no memory for the table of stacks; recording without", NULL);
        prmi_rec.stacks = PRMI_STACKS_OFF;
    }
    prmi_rec.start_ns = prm_os_monotonic_ns();
    prmi_rec.last_sample_ns = prmi_rec.start_ns;
    uint32_t flags = 0;
    if (prmi_rec.stacks != PRMI_STACKS_OFF)
        flags = prmi_stack_available() ? 1u | (prmi_rec.stacks == PRMI_STACKS_SAMPLED ? 2u : 0u)
                                       : 4u;
    struct { char magic[8]; uint32_t pid, flags; uint64_t sample_mean, start_ns; } header = {
        { 'P', 'R', 'M', 'R', 'A', 'W', '0', '2' }, (uint32_t)prm_os_pid(), flags,
        prmi_rec.stacks == PRMI_STACKS_SAMPLED ? prmi_rec.sample_mean : 0, prmi_rec.start_ns };
    memcpy(prmi_rec.buffer, &header, sizeof header);
    prmi_rec.used = sizeof header;
    /* Which program this process runs: after an exec (a wrapper's), the file names the
     * same pid as the wrapper's, and this says what was recorded. */
    static char command[4096];
    long length = prm_os_read_file("/proc/self/cmdline", command, sizeof command);
    put_text(1, command, length > 0 ? (size_t)length : 0);
}

/* The address of an operation: how it is written (the tag's bits 4-7). The reader keeps
 * the last addresses in a ring; the writer finds an address's place there in O(1): a
 * small table remembers, per hash slot, the last address pushed there and its push
 * number, so its place is pushes - that number (a collision only costs a missed match). */
static inline unsigned address_slot(uint64_t address)
{
    return (unsigned)((address >> 4) ^ (address >> 12)) & (PRMI_REC_SEEN - 1);
}

static inline unsigned address_code(uint64_t address, unsigned slot)
{
    if (address == 0)
        return 15;
    const struct prmi_rec_seen *seen = &prmi_rec.seen[slot];
    if (seen->address == address && prmi_rec.pushes - seen->push < PRMI_REC_RING)
        return (unsigned)(prmi_rec.pushes - seen->push) + 1;
    return (address & 15) == 0 ? 0 : 14;
}

static inline void put_address(unsigned code, uint64_t address, unsigned slot)
{
    if (code == 0) {
        put_varint(zigzag((int64_t)(address >> 4) - (int64_t)(prmi_rec.last_address >> 4)));
    } else if (code == 14) {
        memcpy(prmi_rec.buffer + prmi_rec.used, &address, 8);
        prmi_rec.used += 8;
    }
    if (address != 0) {
        prmi_rec.last_address = address;
        struct prmi_rec_seen *seen = &prmi_rec.seen[slot];
        seen->address = address;
        seen->push = ++prmi_rec.pushes;
    }
}

/* A stack reference: its place among the stacks used last, or its id; moved to the front. */
static inline void put_stack_reference(uint32_t stack)
{
    uint32_t *mru = prmi_rec.recent_stacks;
    unsigned i = 0;
    while (i < PRMI_REC_STACK_MRU && mru[i] != stack)
        i++;
    put_varint(i < PRMI_REC_STACK_MRU ? i : (uint64_t)stack + PRMI_REC_STACK_MRU);
    if (i == PRMI_REC_STACK_MRU)
        i--;
    memmove(&mru[1], &mru[0], i * sizeof mru[0]);
    mru[0] = stack;
}

static PRM_NOINLINE void put_stack_definition(uint32_t id, const uintptr_t *frames, int depth)
{
    put_byte(PRMI_EXT_STACK << 3);
    put_varint(id);
    put_varint((uint64_t)depth);
    uintptr_t previous = 0;
    for (int i = 0; i < depth; i++) {
        put_varint(zigzag((int64_t)(frames[i] - previous)));
        previous = frames[i];
    }
}

/* ---- the timeline ---- */

static uint64_t heap_bytes_now(void)
{
    uint64_t total = 0;
    FOR_EACH_ARENA(av)
        total += __atomic_load_n(&av->system_bytes, __ATOMIC_RELAXED);
    return total;
}

static uint64_t mmapped_bytes_now(void)
{
    return __atomic_load_n(&prmi_state.mmapped.mapped_bytes, __ATOMIC_RELAXED);
}

static uint64_t rss_bytes_now(void)
{
    char text[128];
    long length = prm_os_read_file("/proc/self/statm", text, sizeof text - 1);
    if (length <= 0)
        return 0;
    text[length] = '\0';
    const char *c = text;
    while (*c != ' ' && *c != '\0')     /* the second field: resident pages */
        c++;
    uint64_t pages = 0;
    for (c++; *c >= '0' && *c <= '9'; c++)
        pages = pages * 10 + (uint64_t)(*c - '0');
    return pages * prm_os_page_size();
}

/* Under the lock. */
static void put_sample(unsigned event, uint64_t now_ns, uint64_t heap, uint64_t mmapped)
{
    long minor = 0, major = 0;
    (void)prm_os_page_faults(&minor, &major);
    put_byte(PRMI_EXT_SAMPLE << 3);
    put_varint(now_ns - prmi_rec.start_ns);
    put_varint(heap);
    put_varint(mmapped);
    put_varint(rss_bytes_now());
    put_varint((uint64_t)minor);
    put_varint((uint64_t)major);
    put_byte(event);
    prmi_rec.last_sample_ns = now_ns;
}

/* After an operation, under the lock, when the main heap's or the mmapped bytes moved or
 * every 256 operations: a sample when the heap (all arenas) or the mmapped bytes moved
 * (the operation called brk, mmap or munmap), and every PRMI_SAMPLE_NS. Out of line:
 * the common case is the three tests in timeline_locked. */
static PRM_NOINLINE void timeline_check(void)
{
    prmi_rec.last_main_heap = __atomic_load_n(&prmi_state.main_arena.system_bytes,
                                              __ATOMIC_RELAXED);
    uint64_t heap = heap_bytes_now(), mmapped = mmapped_bytes_now();
    if (heap != prmi_rec.last_heap) {
        make_room();
        put_sample(heap > prmi_rec.last_heap ? PRMI_EVENT_BRK : PRMI_EVENT_TRIM,
                   prm_os_monotonic_ns(), heap, prmi_rec.last_mmapped);
        prmi_rec.last_heap = heap;
    }
    if (mmapped != prmi_rec.last_mmapped) {
        make_room();
        put_sample(mmapped > prmi_rec.last_mmapped ? PRMI_EVENT_MMAP : PRMI_EVENT_MUNMAP,
                   prm_os_monotonic_ns(), heap, mmapped);
        prmi_rec.last_mmapped = mmapped;
    }
    uint64_t now = prm_os_monotonic_ns();
    if (now - prmi_rec.last_sample_ns >= PRMI_SAMPLE_NS) {
        make_room();
        put_sample(PRMI_EVENT_TICK, now, heap, mmapped);
    }
}

/* Other arenas' heaps are summed at the 256-operation checks: a thread's heap growing is
 * seen there, the main heap's and the mapped chunks' at once. */
static inline void timeline_locked(void)
{
    if (prm_unlikely(__atomic_load_n(&prmi_state.main_arena.system_bytes, __ATOMIC_RELAXED)
                         != prmi_rec.last_main_heap ||
                     mmapped_bytes_now() != prmi_rec.last_mmapped ||
                     (++prmi_rec.ops_since_clock & 255) == 0))
        timeline_check();
}

/* One operation, with its stack (depth 0: none). Inlined into each hook (the header,
 * the stack definitions and the flushes are out of line): 35 instructions fewer per
 * operation than a call, a quarter of what recording costs. */
static inline __attribute__((always_inline)) void append(int op, unsigned align_log2,
                                                         uintptr_t address, size_t size,
                                                         const uintptr_t *frames, int depth)
{
    /* A signal handler that allocates while this thread holds the lock would wait for
     * itself forever: its record is lost instead (the loader then reports the address). */
    if (prm_unlikely(prm_lock_held_by_me(&prmi_rec.lock)))
        return;
    prm_lock_acquire(&prmi_rec.lock);
    if (prm_likely(prmi_rec.tracing)) {
        if (prm_unlikely(!prmi_rec.header_written))
            write_header_locked();
        make_room();
        /* Numbered under the lock, so numbers follow the order of first records. */
        uint32_t thread = rec_thread;
        if (prm_unlikely(thread == 0))
            rec_thread = thread = ++prmi_rec.threads;
        if (prm_unlikely(thread - 1 != prmi_rec.stream_thread)) {
            prmi_rec.stream_thread = thread - 1;
            put_byte(PRMI_EXT_THREAD << 3);
            put_varint(thread - 1);
        }
        uint32_t stack = 0;
        if (depth > 0) {
            int is_new;
            stack = prmi_stack_intern(frames, depth, &is_new);
            if (is_new)
                put_stack_definition(stack, frames, depth);
        }
        unsigned slot = address_slot(address);
        unsigned code = address_code(address, slot);
        put_byte((unsigned)op | (stack ? 8u : 0u) | code << 4);
        put_address(code, address, slot);
        if (stack)
            put_stack_reference(stack);
        if (op != PRMI_REC_FREE && op != PRMI_REC_REALLOC_END)
            put_varint(size);
        if (op == PRMI_REC_MEMALIGN)
            put_byte(align_log2);
        timeline_locked();
        if (prmi_rec.finished)
            flush_locked();
    }
    prm_lock_release(&prmi_rec.lock);
}

/* The stack of an allocation of `size` bytes, when it gets one: every allocation's
 * (stacks=all) or a sample's (stacks=sampled). Outside every lock. */
static inline int stack_for(size_t size, uintptr_t *frames)
{
    if (prmi_rec.stacks == PRMI_STACKS_ALL ||
        (prmi_rec.stacks == PRMI_STACKS_SAMPLED && prmi_stack_sampled(size, prmi_rec.sample_mean)))
        return prmi_stack_capture(frames);
    return 0;
}

/* "%p" in the pattern becomes the pid, or "PID.N" for the process's Nth program
 * (N > 0: it exec'd, and the program before wrote PID's file). */
static void expand_generation(const char *pattern, int generation, char *out, size_t capacity)
{
    char pid[32];
    prmi_text p = { pid, sizeof pid, 0 };
    prmi_text_dec(&p, (uint64_t)prm_os_pid());
    if (generation > 0) {
        prmi_text_str(&p, ".");
        prmi_text_dec(&p, (uint64_t)generation);
    }
    prmi_text t = { out, capacity, 0 };
    out[0] = '\0';
    for (const char *c = pattern; *c != '\0'; c++) {
        if (c[0] == '%' && c[1] == 'p') {
            prmi_text_str(&t, pid);
            c++;
        } else {
            char one[2] = { *c, '\0' };
            prmi_text_str(&t, one);
        }
    }
}

static int open_trace(const char *value, size_t length)
{
    if (length == 0 || length >= sizeof prmi_rec.trace_path)
        return 0;
    char pattern[sizeof prmi_rec.trace_path];
    memcpy(pattern, value, length);
    pattern[length] = '\0';
    /* A program exec'd by a wrapper (a shell script, a pyenv shim) keeps the wrapper's
     * pid; with "%p" in the path it takes the next free PID.N, so both are recorded. */
    int with_pid = strstr(pattern, "%p") != NULL;
    int fd = -1;
    for (int generation = 0; generation < (with_pid ? 64 : 1); generation++) {
        expand_generation(pattern, generation, prmi_rec.trace_path, sizeof prmi_rec.trace_path);
        fd = prm_os_open_output(prmi_rec.trace_path, 1);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        say(errno == EEXIST ? "pymalloc_real: trace: the file exists (put %p in the path for "
                              "one file per process), not recording this process: "
                            : "pymalloc_real: trace: cannot create ", prmi_rec.trace_path);
        return 1;   /* the option was fine; this process just does not record */
    }
    prmi_rec.fd = fd;
    prmi_rec.tracing = 1;
    prmi_rec_set_active(1);
    return 1;       /* the header is written with the first record, once all options are in */
}

static int set_stacks(const char *value, size_t length)
{
    if (length == 3 && memcmp(value, "all", 3) == 0)
        prmi_rec.stacks = PRMI_STACKS_ALL;
    else if (length == 7 && memcmp(value, "sampled", 7) == 0)
        prmi_rec.stacks = PRMI_STACKS_SAMPLED;
    else if (length == 3 && memcmp(value, "off", 3) == 0)
        prmi_rec.stacks = PRMI_STACKS_OFF;
    else
        return 0;
    return 1;
}

static int set_sample_mean(const char *value, size_t length)
{
    long bytes;
    if (!prmi_parse_number(value, length, &bytes) || bytes < 1)
        return 0;
    prmi_rec.sample_mean = (uint64_t)bytes;
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
    prmi_rec_set_active(1);
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
    expand_generation(prmi_rec.profile_path, 0, path, sizeof path);
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
    if (prmi_rec.tracing) {
        uintptr_t frames[PRMI_STACK_DEPTH];
        int depth = result != NULL ? stack_for(size, frames) : 0;
        append(op, log2_ceil(alignment), (uintptr_t)result, size, frames, depth);
    }
}

void prmi_rec_free(void *mem)
{
    if (mem == NULL)
        return;
    if (prmi_rec.profiling)
        profile_live(mem, -1);
    if (prmi_rec.tracing)
        append(PRMI_REC_FREE, 0, (uintptr_t)mem, 0, NULL, 0);
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
        append(PRMI_REC_REALLOC, 0, (uintptr_t)mem, size, NULL, 0);
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
    if (prmi_rec.tracing) {
        uintptr_t frames[PRMI_STACK_DEPTH];
        int depth = result != NULL ? stack_for(size, frames) : 0;
        append(PRMI_REC_REALLOC_END, 0, (uintptr_t)result, size, frames, depth);
    }
}

/* /proc/self/maps at exit, for the symboliser: which object each return address is in.
 * Read into a temporary mapping (the file can be long), grown until it all fits. */
static void write_maps_locked(void)
{
    for (size_t capacity = (size_t)1 << 20; capacity <= (size_t)1 << 28; capacity <<= 2) {
        char *text = prm_os_mmap(capacity);
        if (text == NULL)
            return;
        long length = prm_os_read_file("/proc/self/maps", text, capacity);
        if (length >= 0 && (size_t)length < capacity)
            put_text(2, text, (size_t)length);
        prm_os_munmap(text, capacity);
        if (length < 0 || (size_t)length < capacity)
            return;
    }
}

int prmi_rec_option(const char *key, size_t key_length, const char *value, size_t value_length)
{
    if (key_length == 5 && memcmp(key, "trace", 5) == 0)
        return open_trace(value, value_length);
    if (key_length == 6 && memcmp(key, "stacks", 6) == 0)
        return set_stacks(value, value_length);
    if (key_length == 6 && memcmp(key, "sample", 6) == 0)
        return set_sample_mean(value, value_length);
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
        if (!prmi_rec.header_written)
            write_header_locked();
        make_room();
        put_sample(PRMI_EVENT_TICK, prm_os_monotonic_ns(), heap_bytes_now(), mmapped_bytes_now());
        write_maps_locked();
        make_room();
        put_byte(PRMI_EXT_END << 3);
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
    prmi_rec_set_active(prmi_rec.profiling);
    rec_thread = 0;
    prmi_stack_fork_child();
}
