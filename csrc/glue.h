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

/* A three-state futex mutex (Drepper, "Futexes are tricky", mutex2):
 * 0 unlocked, 1 locked, 2 locked with possible waiters. */
typedef struct prm_lock {
    int state;
} prm_lock;

#define PRM_LOCK_INIT { 0 }

PRM_INTERNAL void prmi_lock_slow(prm_lock *lock);

static inline void prm_lock_acquire(prm_lock *lock)
{
    int expected = 0;
    if (prm_likely(__atomic_compare_exchange_n(&lock->state, &expected, 1, 0,
                                               __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        return;
    prmi_lock_slow(lock);
}

static inline bool prm_lock_try(prm_lock *lock)
{
    int expected = 0;
    return __atomic_compare_exchange_n(&lock->state, &expected, 1, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static inline void prm_lock_release(prm_lock *lock)
{
    if (__atomic_exchange_n(&lock->state, 0, __ATOMIC_RELEASE) == 2)
        prm_os_futex_wake(&lock->state, 1);
}

#endif
