/* os.c - the kernel layer: brk, mmap, munmap, mremap, madvise, mincore, futex,
 * getrusage, prctl (naming mappings) and the raw write used by the error reporter.
 * Nothing else in the allocator makes a system call. See os.h for the contract. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <ucontext.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static prm_os_counters os_counters;
static unsigned os_injected_failures[PRM_OS_OP_COUNT];

#define COUNT(field, n) __atomic_fetch_add(&os_counters.field, (uint64_t)(n), __ATOMIC_RELAXED)

/* Consume one injected failure of `op`, if any are pending. */
static int injected_failure(int op)
{
    unsigned left = __atomic_load_n(&os_injected_failures[op], __ATOMIC_RELAXED);
    while (left > 0) {
        if (__atomic_compare_exchange_n(&os_injected_failures[op], &left, left - 1, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            errno = ENOMEM;
            return 1;
        }
    }
    return 0;
}

int prm_os_inject_failures(int op, unsigned count)
{
    if (op < 0 || op >= PRM_OS_OP_COUNT)
        return -1;
    __atomic_store_n(&os_injected_failures[op], count, __ATOMIC_RELAXED);
    return 0;
}

uintptr_t prm_os_brk_current(void)
{
    COUNT(brk_reads, 1);
    return (uintptr_t)syscall(SYS_brk, 0);
}

/* The break is set through glibc's brk() rather than a raw syscall on purpose: brk()
 * is the bare system call plus an update of glibc's cached break (__curbrk). glibc's
 * sbrk() computes its next break from that cache, so if we moved the break behind its
 * back, the interpreter's own malloc would later call brk(stale + n) and the kernel
 * would shrink the break underneath our chunks. Reading (prm_os_brk_current) stays raw
 * so we never trust anyone's cache. */
uintptr_t prm_os_brk_move(uintptr_t current, uintptr_t target)
{
    if (target > current && injected_failure(PRM_OS_OP_BRK_GROW)) {
        COUNT(brk_failures, 1);
        return current;
    }
    if (brk((void *)target) != 0) {
        COUNT(brk_failures, 1);
        return prm_os_brk_current();
    }
    COUNT(brk_moves, 1);
    if (target > current)
        COUNT(brk_bytes_grown, target - current);
    else
        COUNT(brk_bytes_shrunk, current - target);
    return target;
}

void *prm_os_mmap(size_t length)
{
    if (injected_failure(PRM_OS_OP_MMAP)) {
        COUNT(mmap_failures, 1);
        return NULL;
    }
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        COUNT(mmap_failures, 1);
        return NULL;
    }
    COUNT(mmap_calls, 1);
    COUNT(mmap_bytes, length);
    return p;
}

/* The allocator's own metadata (the ownership map's leaves): not counted with the
 * program's mappings, never a target of injected failures, which test the program's
 * paths. MAP_NORESERVE: a leaf is mostly never written. */
void *prm_os_map_metadata(size_t length)
{
    void *p = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void prm_os_unmap_metadata(void *addr, size_t length)
{
    munmap(addr, length);
}

int prm_os_munmap(void *addr, size_t length)
{
    int rc = munmap(addr, length);
    COUNT(munmap_calls, 1);
    if (rc == 0)
        COUNT(munmap_bytes, length);
    return rc;
}

int prm_os_tombstone(void *addr, size_t page, int replace)
{
    int fixed = replace ? MAP_FIXED : MAP_FIXED_NOREPLACE;
    void *p = mmap(addr, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | fixed, -1, 0);
    COUNT(tombstone_calls, 1);
    if (p != addr) {
        if (p != MAP_FAILED)   /* a kernel older than 4.17 took the address as a hint */
            munmap(p, page);
        return -1;
    }
    if (!replace)
        return 0;   /* the page was already given back */
    COUNT(munmap_bytes, page);   /* its memory is given back; only the address stays */
    return 0;
}

int prm_os_forget_tombstone(void *addr, size_t page)
{
    COUNT(munmap_calls, 1);      /* its bytes were counted when it became a tombstone */
    return munmap(addr, page);
}

void *prm_os_mremap(void *addr, size_t old_length, size_t new_length)
{
    if (injected_failure(PRM_OS_OP_MREMAP)) {
        COUNT(mremap_failures, 1);
        return NULL;
    }
    void *p = mremap(addr, old_length, new_length, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
        COUNT(mremap_failures, 1);
        return NULL;
    }
    COUNT(mremap_calls, 1);
    if (new_length > old_length)
        COUNT(mmap_bytes, new_length - old_length);
    else
        COUNT(munmap_bytes, old_length - new_length);
    return p;
}

void *prm_os_reserve_aligned(size_t length, size_t alignment)
{
    /* Over-reserve, then cut the misaligned head and the tail away. */
    size_t span = length + alignment;
    if (span < length)
        return NULL;
    char *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        COUNT(mmap_failures, 1);
        return NULL;
    }
    COUNT(mmap_calls, 1);
    uintptr_t start = ((uintptr_t)p + alignment - 1) & ~(uintptr_t)(alignment - 1);
    size_t head = start - (uintptr_t)p;
    size_t tail = span - head - length;
    if (head > 0)
        munmap(p, head);
    if (tail > 0)
        munmap((char *)start + length, tail);
    return (void *)start;
}

int prm_os_commit(void *addr, size_t length)
{
    if (injected_failure(PRM_OS_OP_MMAP))
        return -1;
    int rc = mprotect(addr, length, PROT_READ | PROT_WRITE);
    if (rc == 0)
        COUNT(mmap_bytes, length);
    return rc;
}

int prm_os_decommit(void *addr, size_t length)
{
    void *p = mmap(addr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                   -1, 0);
    if (p == MAP_FAILED)
        return -1;
    COUNT(munmap_bytes, length);
    return 0;
}

int prm_os_discard(void *addr, size_t length)
{
    int rc = madvise(addr, length, MADV_DONTNEED);
    COUNT(discard_calls, 1);
    if (rc == 0)
        COUNT(discard_bytes, length);
    return rc;
}

int prm_os_no_huge_pages(void *addr, size_t length)
{
    return madvise(addr, length, MADV_NOHUGEPAGE);
}

int prm_os_mincore(void *addr, size_t length, unsigned char *vec)
{
    COUNT(mincore_calls, 1);
    return mincore(addr, length, vec);
}

size_t prm_os_page_size(void)
{
    static size_t page_size;   /* written once; a racing second write stores the same value */
    size_t size = __atomic_load_n(&page_size, __ATOMIC_RELAXED);
    if (size == 0) {
        size = (size_t)sysconf(_SC_PAGESIZE);
        __atomic_store_n(&page_size, size, __ATOMIC_RELAXED);
    }
    return size;
}

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41   /* Linux 5.17; older headers lack the names */
#define PR_SET_VMA_ANON_NAME 0
#endif

/* 1 once the kernel named a mapping, -errno once it refused for good. */
static int os_naming_status;

int prm_os_name_mapping(void *addr, size_t length, const char *name)
{
    int status = __atomic_load_n(&os_naming_status, __ATOMIC_RELAXED);
    if (status < 0)
        return -1;
    int saved = errno;
    if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)addr, (unsigned long)length,
              (unsigned long)name) == 0) {
        COUNT(mappings_named, 1);
        if (status == 0)
            __atomic_store_n(&os_naming_status, 1, __ATOMIC_RELAXED);
        return 0;
    }
    int error = errno;
    COUNT(naming_refused, 1);
    /* EINVAL: the kernel does not know the option (before 5.17, or built without
     * CONFIG_ANON_VMA_NAME); asking again would only cost a system call per mapping. */
    if (error == EINVAL && status == 0)
        __atomic_store_n(&os_naming_status, -EINVAL, __ATOMIC_RELAXED);
    errno = saved;
    return -1;
}

void prm_os_futex_wait(int *word, int expected)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
    errno = saved;
}

void prm_os_futex_wake(int *word, int count)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
    errno = saved;
}

/* The raw system call, not write(): write() is a cancellation point, and a report (or
 * malloc_stats in a thread with a cancellation pending) must not stop half-way. */
void prm_os_write_stderr(const char *text, size_t length)
{
    int saved = errno;
    while (length > 0) {
        ssize_t n = (ssize_t)syscall(SYS_write, 2, text, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        text += n;
        length -= (size_t)n;
    }
    errno = saved;
}

int prm_os_write_file(const char *path, const char *data, size_t length)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = 0;
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = -1;
            break;
        }
        data += n;
        length -= (size_t)n;
    }
    int saved = errno;
    if (close(fd) != 0 && rc == 0)
        rc = -1;
    else
        errno = saved;
    return rc;
}

int prm_os_open_output(const char *path, int exclusive)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC);
    int fd;
    do
        fd = open(path, flags, 0644);
    while (fd < 0 && errno == EINTR);
    return fd;
}

int prm_os_write_all(int fd, const void *data, size_t length)
{
    const char *p = data;
    while (length > 0) {
        ssize_t n = write(fd, p, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        length -= (size_t)n;
    }
    return 0;
}

int prm_os_close(int fd)
{
    return close(fd);
}

long prm_os_read_file(const char *path, char *buffer, size_t capacity)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -1;
    size_t total = 0;
    while (total < capacity) {
        ssize_t n = read(fd, buffer + total, capacity - total);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        total += (size_t)n;
    }
    close(fd);
    return (long)total;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14; older headers lack the name */
#endif

int prm_os_populate(void *addr, size_t length)
{
    return madvise(addr, length, MADV_POPULATE_WRITE);
}

int prm_os_pid(void)
{
    return (int)getpid();
}

int prm_os_gettid(void)
{
    return (int)syscall(SYS_gettid);
}

/* CPUs this process may run on, from the raw sched_getaffinity system call into a stack
 * mask: glibc's helpers may allocate, and this runs inside malloc. */
int prm_os_cpu_count(void)
{
    unsigned long mask[64];
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    if (bytes <= 0)
        return 1;
    int count = 0;
    for (long i = 0; i < bytes / (long)sizeof mask[0]; i++)
        count += __builtin_popcountl(mask[i]);
    return count > 0 ? count : 1;
}

void prm_os_abort(void)
{
    abort();
}

/* ---- faults (hardened mode) ------------------------------------------------------------ */

static prm_os_fault_handler *fault_handler;
static struct sigaction kept_segv, kept_bus;

static int fault_access(const void *context)
{
#if defined(__x86_64__)
    /* The page-fault error code: bit 1 set for a write. */
    const ucontext_t *uc = context;
    return (uc->uc_mcontext.gregs[REG_ERR] & 2) ? PRM_OS_FAULT_WRITE : PRM_OS_FAULT_READ;
#else
    (void)context;
    return PRM_OS_FAULT_ACCESS;
#endif
}

static void on_fault(int signal, siginfo_t *info, void *context)
{
    int saved = errno;
    fault_handler(signal, info->si_addr, fault_access(context));
    errno = saved;
}

int prm_os_catch_faults(prm_os_fault_handler *handler)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&action.sa_mask);
    fault_handler = handler;
    if (sigaction(SIGSEGV, &action, &kept_segv) != 0)
        return -1;
    if (sigaction(SIGBUS, &action, &kept_bus) != 0) {
        sigaction(SIGSEGV, &kept_segv, NULL);
        return -1;
    }
    return 0;
}

void prm_os_release_fault(int signal)
{
    sigaction(signal, signal == SIGBUS ? &kept_bus : &kept_segv, NULL);
}

uint64_t prm_os_monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

int prm_os_page_faults(long *minor, long *major)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return -1;
    *minor = usage.ru_minflt;
    *major = usage.ru_majflt;
    return 0;
}

const prm_os_counters *prm_os_counters_address(void)
{
    return &os_counters;
}

void prm_os_get_counters(prm_os_counters *out)
{
    uint64_t *dst = (uint64_t *)out;
    uint64_t *src = (uint64_t *)&os_counters;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
