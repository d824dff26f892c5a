/* trace.h - the preload library's recorder: allocation traces (option trace=PATH), the
 * size-class profile of the live heap (profile=PATH), and presizing the heap from such a
 * profile at start-up (presize=PATH, presize.c). Only the LD_PRELOAD build has them.
 *
 * The hooks in preload.c test `prmi_recorder.active` (one predictable branch when
 * nothing records) and otherwise call one function per event. Ordering is what makes a
 * trace of a multithreaded program consistent: a release (free, the first half of a
 * realloc) is recorded *before* the core call and an acquisition *after* it, so an
 * address always appears in the trace released before anybody reuses it.
 *
 * The raw trace file (converted to dense object ids by pymalloc_real/trace/model.py):
 *
 *   header (16 bytes):  "PRMRAW01"  uint32 record size (24)  uint32 pid
 *   records (24 bytes): uint8 op  uint8 align_log2  uint16 thread  uint32 0
 *                       uint64 address  uint64 size              (little endian)
 *
 *   op 1 malloc, 4 calloc (size = total bytes), 5 memalign & co: address = the result
 *        (0 when the call failed); 2 free: address = the argument (never 0);
 *   3 realloc begins (before the call): address = the old pointer (0 for NULL), size =
 *        the new size; 6 realloc ends (after it), same thread: address = the result.
 *   Threads are numbered 0, 1, 2, ... in the order of their first record. */
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

typedef struct prmi_rec_record {
    uint8_t op;
    uint8_t align_log2;
    uint16_t thread;
    uint32_t reserved;
    uint64_t address;
    uint64_t size;
} prmi_rec_record;

/* The profile's size classes, by chunk size: 32, 48, ..., 1024 one per 16 bytes (the
 * thread caches' and small bins' classes), then powers of two up to 2^63. */
#define PRMI_PROFILE_SMALL   63
#define PRMI_PROFILE_CLASSES (PRMI_PROFILE_SMALL + 64 - 10)
#define PRMI_REC_BUFFER      10240    /* records: 240 KiB written per write(2) */

typedef struct prmi_recorder {
    int active;                 /* tracing | profiling: the hooks' one test */
    int tracing;
    int profiling;
    int finished;               /* the exit destructor ran: write each record at once */
    int complained;
    int fd;                     /* the trace file */
    prm_lock lock;              /* the buffer, the thread numbering, the snapshot */
    uint32_t threads;           /* numbers handed out so far */
    size_t used;                /* records in the buffer */
    char trace_path[1024];
    char profile_path[1024];
    /* The profile: live chunks per class now, and at the snapshot of the peak. */
    uint64_t live_bytes;        /* usable bytes of live blocks */
    uint64_t snapshot_bytes;    /* live_bytes when the snapshot was taken */
    uint64_t next_snapshot;     /* take another once live_bytes passes this */
    int64_t live[PRMI_PROFILE_CLASSES];
    int64_t snapshot[PRMI_PROFILE_CLASSES];
    prmi_rec_record buffer[PRMI_REC_BUFFER];
} prmi_recorder;

PRM_INTERNAL extern prmi_recorder prmi_rec;

/* Events, called by the hooks only while prmi_rec.active. `alignment` is 0 for the
 * unaligned calls. */
PRM_INTERNAL void prmi_rec_alloc(int op, void *result, size_t size, size_t alignment);
PRM_INTERNAL void prmi_rec_free(void *mem);
PRM_INTERNAL void prmi_rec_realloc_begin(void *mem, size_t size);
PRM_INTERNAL void prmi_rec_realloc_end(void *result, size_t size);

/* An option of PYMALLOC_REAL_OPTIONS: trace, profile or presize. Returns -1 when the key
 * is not one of them, 0 for a bad value, 1 when taken. Runs while the allocator
 * initialises: the trace file is created here. */
PRM_INTERNAL int prmi_rec_option(const char *key, size_t key_length, const char *value,
                                 size_t value_length);
/* At exit (the destructor that writes the stats report): flush the trace, write the
 * profile. Records made after this are written one at a time. */
PRM_INTERNAL void prmi_rec_finish(void);

/* presize.c: remember the profile to presize from (option presize=PATH), and, once all
 * options are read, presize the main heap from it. */
PRM_INTERNAL int prmi_presize_option(const char *value, size_t value_length);
PRM_INTERNAL void prmi_presize_apply(void);
/* What presizing did (0 when it did not run), for the profile written at exit. */
PRM_INTERNAL size_t prmi_presized_bytes(void);

#endif
