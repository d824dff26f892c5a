/* glue.h - the allocator's coupling to the C runtime: branch hints, the lock, and
 * errno preservation. Locks are futex based so they need neither pthread nor any
 * allocation, and work in programs that never link libpthread. */
#ifndef PRM_GLUE_H
#define PRM_GLUE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

#define prm_likely(x)   __builtin_expect(!!(x), 1)
#define prm_unlikely(x) __builtin_expect(!!(x), 0)
#define PRM_NOINLINE    __attribute__((noinline))
#define PRM_COLD        __attribute__((cold, noinline))
#define PRM_INTERNAL    __attribute__((visibility("hidden")))

/* A hint to the CPU inside spin loops. */
static inline void prm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* The lock: a futex word holding the owner's thread id, with PRM_LOCK_WAITERS set when
 * somebody may be sleeping on it (Drepper, "Futexes are tricky", with the owner kept in
 * the word itself). Knowing the owner atomically is what makes fork from a signal
 * handler safe: the fork handlers skip, rather than deadlock on, a lock that the
 * interrupted code of the forking thread holds (see threads.c). Thread ids fit in 22
 * bits (pid_max <= 4M). */
typedef struct prm_lock {
    int word;
    /* A sequence counter for readers outside the process (the live view, publish.c):
     * odd while the lock is held, even while it is free, bumped by the holder only, so
     * a reader that sees the same even value before and after copying what the lock
     * guards knows it copied a consistent state. Two plain stores per lock cycle. */
    unsigned seq;
} prm_lock;

#define PRM_LOCK_INIT    { 0 }
#define PRM_LOCK_WAITERS 0x40000000

/* This thread's kernel id, cached (threads.c). */
PRM_INTERNAL extern __thread int prmi_tls_tid;

static inline int prm_thread_id(void)
{
    int tid = prmi_tls_tid;
    if (prm_unlikely(tid == 0))
        prmi_tls_tid = tid = prm_os_gettid();
    return tid;
}

PRM_INTERNAL void prmi_lock_slow(prm_lock *lock, int me);

#if defined(__SANITIZE_THREAD__)
#define PRM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PRM_TSAN 1
#endif
#endif

/* The holder's half of the sequence counter (a seqlock writer): odd from here on... */
static inline void prm_lock_seq_enter(prm_lock *lock)
{
#ifdef PRM_TSAN
    /* ThreadSanitizer does not model fences: the same order from a read-modify-write. */
    __atomic_exchange_n(&lock->seq, lock->seq + 1, __ATOMIC_ACQ_REL);
#else
    __atomic_store_n(&lock->seq, lock->seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);   /* odd before any write it guards */
#endif
}

/* ...and even again once every write under the lock is visible. */
static inline void prm_lock_seq_leave(prm_lock *lock)
{
    __atomic_store_n(&lock->seq, lock->seq + 1, __ATOMIC_RELEASE);
}

/* glibc tells whether the process has only ever had one thread; then nobody can
 * contend, and the lock needs no atomic read-modify-write (glibc's malloc skips its
 * locks the same way). The owner is still written, for the fork handlers. Our code
 * never creates threads while holding a lock, so the flag cannot change under one. */
#if defined(__has_include)
#if __has_include(<sys/single_threaded.h>)
#include <sys/single_threaded.h>
#define prm_single_threaded() (__libc_single_threaded != 0)
#endif
#endif
#ifndef prm_single_threaded
#define prm_single_threaded() 0
#endif

static inline void prm_lock_acquire(prm_lock *lock)
{
    int me = prm_thread_id();
    int expected = 0;
    if (prm_single_threaded() && __atomic_load_n(&lock->word, __ATOMIC_RELAXED) == 0)
        __atomic_store_n(&lock->word, me, __ATOMIC_RELAXED);
    else if (prm_unlikely(!__atomic_compare_exchange_n(&lock->word, &expected, me, 0,
                                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        prmi_lock_slow(lock, me);
    prm_lock_seq_enter(lock);
}

/* Take the lock if nobody holds it, without waiting: 1 if taken. */
static inline bool prm_lock_try_acquire(prm_lock *lock)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&lock->word, &expected, prm_thread_id(), 0,
                                     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return false;
    prm_lock_seq_enter(lock);
    return true;
}

static inline void prm_lock_release(prm_lock *lock)
{
    prm_lock_seq_leave(lock);
    if (prm_single_threaded()) {
        __atomic_store_n(&lock->word, 0, __ATOMIC_RELAXED);
        return;
    }
    if (__atomic_exchange_n(&lock->word, 0, __ATOMIC_RELEASE) & PRM_LOCK_WAITERS)
        prm_os_futex_wake(&lock->word, 1);
}

static inline bool prm_lock_held_by_me(prm_lock *lock)
{
    return (__atomic_load_n(&lock->word, __ATOMIC_RELAXED) & ~PRM_LOCK_WAITERS) == prm_thread_id();
}

/* In the child of fork only one thread exists: whoever held a lock is gone. */
static inline void prm_lock_reset(prm_lock *lock)
{
    __atomic_store_n(&lock->word, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&lock->seq, (lock->seq + 1) & ~1u, __ATOMIC_RELAXED);
}

#endif
