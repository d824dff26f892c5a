/* os.h - the kernel layer: the one door through which the allocator reaches the kernel.
 *
 * Contract for every function here:
 *   - it never allocates, never uses stdio and is async-signal-safe;
 *   - lengths are in bytes; addresses handed to munmap/mremap/madvise/mincore are page
 *     aligned and lengths are multiples of the page size (callers guarantee it);
 *   - failure is reported by the return value (NULL, -1 or an unchanged break) with errno
 *     set by the kernel; nothing here prints or aborts except prm_os_abort;
 *   - every call is counted (prm_os_get_counters), and tests can make the next calls of a
 *     kind fail (prm_os_inject_failures) to exercise the out-of-memory paths for real.
 *
 * This header includes nothing of the allocator's, and os.c includes only this header.
 */
#ifndef PRM_OS_H
#define PRM_OS_H

#include <stddef.h>
#include <stdint.h>

/* The program break. prm_os_brk_current asks the kernel (raw brk(0)), never a cached
 * value, because the break is shared with the interpreter's own glibc malloc.
 * prm_os_brk_move asks for a new break, given the break the caller has just read, and
 * returns the break the kernel settled on: equal to target on success, the unchanged
 * break on failure. */
uintptr_t prm_os_brk_current(void);
uintptr_t prm_os_brk_move(uintptr_t current, uintptr_t target);

/* Private anonymous read/write memory, zero filled by the kernel. NULL on failure. */
void *prm_os_mmap(size_t length);
int   prm_os_munmap(void *addr, size_t length);
/* Memory for the allocator's own tables: uncounted, no injected failures, NULL when
 * refused. */
void *prm_os_map_metadata(size_t length);
void  prm_os_unmap_metadata(void *addr, size_t length);
/* Put a read-only page of zeros at addr (page aligned), which costs no memory: over our
 * own mapping there (`replace`), or only where nothing is mapped now. 0, or -1. */
int   prm_os_tombstone(void *addr, size_t page, int replace);
int   prm_os_forget_tombstone(void *addr, size_t page);
/* Resize a mapping, allowing the kernel to move it. NULL on failure (the old mapping
 * is then untouched). */
void *prm_os_mremap(void *addr, size_t old_length, size_t new_length);
/* Address space for a non-main arena's heap: `length` bytes aligned to `alignment`
 * (a power of two), PROT_NONE, nothing committed. NULL on failure. */
void *prm_os_reserve_aligned(size_t length, size_t alignment);
/* Make reserved pages usable (read/write), or give them back and make them
 * inaccessible again. 0, or -1 with errno. */
int   prm_os_commit(void *addr, size_t length);
int   prm_os_decommit(void *addr, size_t length);
/* Give the physical pages back (MADV_DONTNEED): the range stays mapped and reads as
 * zero on the next touch. */
int   prm_os_discard(void *addr, size_t length);
/* Ask the kernel not to back the range with transparent huge pages (MADV_NOHUGEPAGE),
 * so that faults are counted per 4 KiB page. */
int   prm_os_no_huge_pages(void *addr, size_t length);
/* One byte per page: bit 0 set when the page is resident. */
int   prm_os_mincore(void *addr, size_t length, unsigned char *vec);

size_t prm_os_page_size(void);

/* Name an anonymous mapping so that /proc/PID/maps shows it as "[anon:NAME]"
 * (prctl PR_SET_VMA_ANON_NAME, Linux 5.17 with CONFIG_ANON_VMA_NAME); `name` is a
 * string constant. Best effort: a kernel that refuses (EINVAL) is asked once and never
 * again; the counters say what happened (mappings_named, naming_refused). Never changes
 * errno (it runs inside malloc). 0 if named, or -1. */
int prm_os_name_mapping(void *addr, size_t length, const char *name);

/* Futex wait/wake on a 32-bit word, for the allocator's locks. */
void prm_os_futex_wait(int *word, int expected);
void prm_os_futex_wake(int *word, int count);

/* Hardened mode's fault handler (faults.c). prm_os_catch_faults makes `handler` take
 * SIGSEGV and SIGBUS (on the alternate stack if the thread has one, the signal's
 * information and the interrupted context passed on), keeping the actions it replaced;
 * prm_os_release_fault hands `signal` back to its kept action, so that the faulting
 * access, executed again, reaches it (async-signal-safe). The access the fault made,
 * from the context: PRM_OS_FAULT_READ, _WRITE, or _ACCESS when the machine does not say. */
enum { PRM_OS_FAULT_ACCESS, PRM_OS_FAULT_READ, PRM_OS_FAULT_WRITE };
typedef void prm_os_fault_handler(int signal, void *address, int access);
int  prm_os_catch_faults(prm_os_fault_handler *handler);
void prm_os_release_fault(int signal);

/* Error output and termination, used only by the one error-reporting routine (and
 * malloc_stats). The write is never a cancellation point. */
void prm_os_write_stderr(const char *text, size_t length);
__attribute__((noreturn)) void prm_os_abort(void);

/* Create or truncate `path` and write `length` bytes to it (the exit report).
 * 0, or -1 with errno. */
int prm_os_write_file(const char *path, const char *data, size_t length);

/* Files for the preload library's recorder (preload/trace.c) and presizing
 * (preload/presize.c).
 * prm_os_open_output creates `path` for writing (close-on-exec, so a program the traced
 * process execs never inherits it); with `exclusive` an existing file is an error
 * (EEXIST) and is left alone. Returns a descriptor, or -1 with errno. */
int  prm_os_open_output(const char *path, int exclusive);
/* Write all `length` bytes (retrying short writes and EINTR). 0, or -1 with errno. */
int  prm_os_write_all(int fd, const void *data, size_t length);
int  prm_os_close(int fd);
/* Read at most `capacity` bytes of the file at `path` into `buffer`: the number of bytes
 * read, or -1 with errno. */
long prm_os_read_file(const char *path, char *buffer, size_t capacity);
/* Back [addr, addr + length) with physical pages now, in one call
 * (MADV_POPULATE_WRITE, Linux 5.14); the pages are counted as minor faults all the
 * same. -1 with errno (EINVAL on older kernels) when the kernel cannot. */
int  prm_os_populate(void *addr, size_t length);

int prm_os_pid(void);
int prm_os_gettid(void);
/* Online CPUs, at least 1. */
int prm_os_cpu_count(void);

/* CLOCK_MONOTONIC in nanoseconds (the lab's replay loop times itself with it). */
uint64_t prm_os_monotonic_ns(void);

/* Minor and major page faults of the calling process so far (getrusage). */
int prm_os_page_faults(long *minor, long *major);

/* Counters of every call made through this layer since the process started. */
typedef struct prm_os_counters {
    uint64_t brk_reads;         /* brk(0) queries */
    uint64_t brk_moves;         /* brk(addr) calls that moved the break */
    uint64_t brk_failures;      /* brk(addr) calls the kernel refused */
    uint64_t mmap_calls;
    uint64_t mmap_failures;
    uint64_t munmap_calls;
    uint64_t mremap_calls;
    uint64_t mremap_failures;
    uint64_t discard_calls;     /* madvise(MADV_DONTNEED) */
    uint64_t mincore_calls;
    uint64_t tombstone_calls;   /* pages left behind by freed mmapped chunks (mmapped.c) */
    uint64_t brk_bytes_grown;   /* total upward break movement */
    uint64_t brk_bytes_shrunk;  /* total downward break movement */
    uint64_t mmap_bytes;        /* total length mapped */
    uint64_t munmap_bytes;      /* total length unmapped */
    uint64_t discard_bytes;     /* total length handed to MADV_DONTNEED */
    uint64_t mappings_named;    /* mappings the kernel named (prm_os_name_mapping) */
    uint64_t naming_refused;    /* names it refused (once EINVAL, we stop asking) */
} prm_os_counters;

void prm_os_get_counters(prm_os_counters *out);
/* Where the counters live, for the live view's directory (publish.c): a reader in
 * another process copies them from there. */
const prm_os_counters *prm_os_counters_address(void);

/* Failure injection for tests: the next `count` calls of `op` fail with ENOMEM without
 * reaching the kernel. count 0 clears the injection. */
enum prm_os_op {
    PRM_OS_OP_BRK_GROW = 0,   /* brk moves that raise the break */
    PRM_OS_OP_MMAP     = 1,
    PRM_OS_OP_MREMAP   = 2,
    PRM_OS_OP_COUNT
};
int prm_os_inject_failures(int op, unsigned count);

#endif
