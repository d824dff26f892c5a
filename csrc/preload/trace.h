/* trace.h - the preload library's recorder: allocation traces (option trace=PATH, with
 * call stacks: stacks=, sample=, callstack.h; and the timeline), the size-class profile of the live heap (profile=PATH), and presizing the heap from such a
 * profile at start-up (presize=PATH, presize.c). Only the LD_PRELOAD build has them.
 *
 * The hooks in preload.c test `prmi_recorder.active` (one predictable branch when
 * nothing records) and otherwise call one function per event. Ordering is what makes a
 * trace of a multithreaded program consistent: a release (free, the first half of a
 * realloc) is recorded *before* the core call and an acquisition *after* it, so an
 * address always appears in the trace released before anybody reuses it.
 *
 * The raw trace file (read by pymalloc_real/trace/rawstream.py): a 32-byte header
 *
 *   "PRMRAW02"  uint32 pid  uint32 flags  uint64 sample_mean  uint64 start_ns
 *   (flags: 1 stacks recorded, 2 sampled by bytes (sample_mean is the mean interval),
 *    4 stacks asked for but this build has no unwinder)
 *
 * then a stream of records, each a tag byte and its fields; numbers are unsigned LEB128
 * varints, "zz" marks a zigzag-coded signed one. Tag bits 0-2 are the kind:
 *
 *   1 malloc, 4 calloc (size = total bytes), 5 memalign & co: the result (NULL when the
 *     call failed), its size, and for memalign one byte of log2(alignment);
 *   2 free: the argument (never NULL);
 *   3 realloc begins (before the call): the old pointer, the new size;
 *   6 realloc ends (after it), same thread: the result (its size is the begin's);
 *   0 an extension, bits 3-7 say which:
 *       1 stack definition: id, depth, then each frame (return addresses, innermost
 *         first) as zz(frame - previous frame), the first relative to 0;
 *       2 thread: the records that follow are thread N's (numbered 0, 1, 2, ... in the
 *         order of their first record; thread 0 needs no such record);
 *       3 timeline sample: t (ns since start_ns), heap bytes, mmapped bytes, RSS bytes,
 *         minor faults, major faults, then one byte: 0 the 10 ms tick, 1 brk (the heap
 *         grew), 2 trim (it shrank), 3 mmap, 4 munmap (mmapped bytes grew or shrank);
 *       4 text: one byte (1 the command line, NUL-separated; 2 /proc/self/maps at exit),
 *         the length, the bytes;
 *       5 end: the process finished normally (written last, at exit).
 *
 * For kinds 1-6 bit 3 says a stack follows the address: a varint n, meaning the n-th
 * most recently used stack when n < 16 (the 16 stacks used last, most recent first;
 * using one moves it to the front), else stack id n - 16 (defined earlier in the
 * stream); and bits 4-7 how the address is written: 0 as zz((address >> 4) -
 * (previous address >> 4)) (16-aligned addresses only), 1-13 the same as the address
 * of that many records back among the last 13 records' addresses (a free of a block
 * just made, a malloc of a block just freed: one byte in all), 14 as 8 raw bytes, 15
 * NULL. "Previous address" is the last non-NULL address written. A CPython run takes
 * about 2-3 bytes per operation (README.md has the figures).
 *
 * Threads are numbered 0, 1, 2, ... in the order of their first record. */
#ifndef PRM_TRACE_H
#define PRM_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "glue.h"

enum prmi_rec_op {
    PRMI_REC_MALLOC = 1,
    PRMI_REC_FREE = 2,
    PRMI_REC_REALLOC = 3,
    PRMI_REC_CALLOC = 4,
    PRMI_REC_MEMALIGN = 5,
    PRMI_REC_REALLOC_END = 6,
};

enum prmi_rec_ext {
    PRMI_EXT_STACK = 1, PRMI_EXT_THREAD = 2, PRMI_EXT_SAMPLE = 3, PRMI_EXT_TEXT = 4,
    PRMI_EXT_END = 5,
};

enum prmi_rec_event {
    PRMI_EVENT_TICK = 0, PRMI_EVENT_BRK = 1, PRMI_EVENT_TRIM = 2, PRMI_EVENT_MMAP = 3,
    PRMI_EVENT_MUNMAP = 4,
};

#define PRMI_REC_RING 13                /* addresses a record may refer back to */
#define PRMI_REC_STACK_MRU 16           /* stacks a record may refer back to */
#define PRMI_REC_SEEN 256               /* slots of the table that finds them (trace.c) */

/* The profile's size classes, by chunk size: 32, 48, ..., 1024 one per 16 bytes (the
 * thread caches' and small bins' classes), then powers of two up to 2^63. */
#define PRMI_PROFILE_SMALL   63
#define PRMI_PROFILE_CLASSES (PRMI_PROFILE_SMALL + 64 - 10)
#define PRMI_REC_BUFFER      (256 * 1024)   /* bytes written per write(2) */
#define PRMI_REC_ROOM        2048           /* the largest record (a 64-frame stack) fits */
#define PRMI_SAMPLE_NS       10000000ull    /* the timeline's tick: 10 ms */

typedef struct prmi_recorder {
    int hooks;                  /* PRMI_HOOK_*: malloc's and free's one test */
    int active;                 /* tracing | profiling (kept by prmi_rec_set_active) */
    int tracing;
    int profiling;
    int finished;               /* the exit destructor ran: write each record at once */
    int complained;
    int fd;                     /* the trace file */
    prm_lock lock;              /* the buffer, the thread numbering, the snapshot */
    int header_written;
    int stacks;                 /* enum prmi_stack_mode (callstack.h) */
    uint64_t sample_mean;       /* stacks=sampled: the mean bytes between samples */
    uint32_t threads;           /* numbers handed out so far */
    uint32_t stream_thread;     /* whose records the stream is on now */
    size_t used;                /* bytes in the buffer */
    uint64_t start_ns;
    /* The stream's state, as the reader rebuilds it: the last address written, how many
     * addresses were written (pushes) and where each slot's address was last (trace.c's
     * address_code), the stacks used last (recent_stacks[0] the latest). */
    uint64_t last_address;
    uint64_t pushes;
    struct prmi_rec_seen { uint64_t address, push; } seen[PRMI_REC_SEEN];
    uint32_t recent_stacks[PRMI_REC_STACK_MRU];
    /* The timeline: when the last sample was taken, and what it saw. */
    uint64_t ops_since_clock;
    uint64_t last_sample_ns;
    uint64_t last_heap, last_mmapped, last_main_heap;
    char trace_path[1024];
    char profile_path[1024];
    /* The profile: live chunks per class now, and at the snapshot of the peak. */
    uint64_t live_bytes;        /* usable bytes of live blocks */
    uint64_t snapshot_bytes;    /* live_bytes when the snapshot was taken */
    uint64_t next_snapshot;     /* take another once live_bytes passes this */
    int64_t live[PRMI_PROFILE_CLASSES];
    int64_t snapshot[PRMI_PROFILE_CLASSES];
    unsigned char buffer[PRMI_REC_BUFFER];
} prmi_recorder;

PRM_INTERNAL extern prmi_recorder prmi_rec;

/* What makes the exported functions leave their plain path: the exit report counts calls
 * (preload.c) or the recorder records them. One word, so that the plain path is one load
 * and a branch. */
enum { PRMI_HOOK_REPORT = 1, PRMI_HOOK_RECORD = 2 };

static inline void prmi_rec_set_active(int on)
{
    prmi_rec.active = on;
    if (on)
        __atomic_fetch_or(&prmi_rec.hooks, PRMI_HOOK_RECORD, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(&prmi_rec.hooks, ~PRMI_HOOK_RECORD, __ATOMIC_RELAXED);
}

/* Events, called by the hooks only while prmi_rec.active. `alignment` is 0 for the
 * unaligned calls. */
PRM_INTERNAL void prmi_rec_alloc(int op, void *result, size_t size, size_t alignment);
PRM_INTERNAL void prmi_rec_free(void *mem);
PRM_INTERNAL void prmi_rec_realloc_begin(void *mem, size_t size);
PRM_INTERNAL void prmi_rec_realloc_end(void *result, size_t size);

/* An option of PYMALLOC_REAL_OPTIONS: trace, stacks, sample, profile or presize. Returns -1 when the key
 * is not one of them, 0 for a bad value, 1 when taken. Runs while the allocator
 * initialises: the trace file is created here. */
PRM_INTERNAL int prmi_rec_option(const char *key, size_t key_length, const char *value,
                                 size_t value_length);
/* At exit (the destructor that writes the stats report): flush the trace, write the
 * profile. Records made after this are written one at a time. */
PRM_INTERNAL void prmi_rec_finish(void);

/* preload.c's number parser (decimal or 0x hex, K/M/G suffixes): 1 when valid. */
PRM_INTERNAL int prmi_parse_number(const char *text, size_t length, long *out);

/* presize.c: remember the profile to presize from (option presize=PATH), and, once all
 * options are read, presize the main heap from it. */
PRM_INTERNAL int prmi_presize_option(const char *value, size_t value_length);
PRM_INTERNAL void prmi_presize_apply(void);
/* What presizing did (0 when it did not run), for the profile written at exit. */
PRM_INTERNAL size_t prmi_presized_bytes(void);

#endif
