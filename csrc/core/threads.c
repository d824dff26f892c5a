/* threads.c - threads and the allocator: the lock's slow path, each thread's state
 * (arena and cache), attaching threads to arenas (ptmalloc's policy), giving a thread's
 * cache back when it exits, and the fork handlers.
 *
 * Arena policy, as glibc's: the first thread takes the main arena; a thread arriving
 * later takes an arena no thread uses, else a new one while there are fewer than
 * arena_max (default 8 x CPUs), else the arenas are shared round robin.
 *
 * Fork: the prepare handler takes every allocator lock so that the child inherits a
 * consistent heap, then the child resets them all (their owners do not exist there).
 * The order it takes them in (after stdio's), fork from a signal handler that
 * interrupted malloc, and fork inside fork are explained above the handlers. */
#include <pthread.h>

#include "hardened.h"
#include "internal.h"

PRM_INTERNAL __thread int prmi_tls_tid;
PRM_INTERNAL __thread prm_thread prmi_self;

static pthread_key_t thread_exit_key;
static int thread_exit_key_ready;

/* ---- The lock's contended path ------------------------------------------------------------ */

/* Spin briefly (the holder is usually a few hundred instructions from releasing; ten
 * rounds measured best on prodcons and larson: a long spin starves the holder of a
 * 2-CPU machine, none sleeps too eagerly), then
 * sleep on the futex with the waiters bit set so the releasing thread wakes somebody. */
PRM_NOINLINE void prmi_lock_slow(prm_lock *lock, int me)
{
    for (int spin = 0; spin < 10; spin++) {
        int expected = 0;
        if (__atomic_load_n(&lock->word, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(&lock->word, &expected, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
        prm_cpu_relax();
    }
    for (;;) {
        int word = __atomic_load_n(&lock->word, __ATOMIC_RELAXED);
        if (word == 0) {
            /* Taken with the waiters bit: others may still sleep, so release must wake. */
            if (__atomic_compare_exchange_n(&lock->word, &word, me | PRM_LOCK_WAITERS, 0,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                return;
            continue;
        }
        if (!(word & PRM_LOCK_WAITERS) &&
            !__atomic_compare_exchange_n(&lock->word, &word, word | PRM_LOCK_WAITERS, 0,
                                         __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;
        prm_os_futex_wait(&lock->word, word | PRM_LOCK_WAITERS);
    }
}

/* ---- Attaching threads to arenas ----------------------------------------------------------- */

static void thread_exit(void *state);

/* Called once, by the allocator's initialisation (no allocation: glibc's key table is
 * static for the first keys). */
void prmi_threads_init(void)
{
    if (pthread_key_create(&thread_exit_key, thread_exit) == 0)
        thread_exit_key_ready = 1;
}

static int arena_limit(void)
{
    if (prmi_state.arena_limit == 0) {
        size_t max = params()->arena_max;
        prmi_state.arena_limit = max > 0 ? (int)(max < 4096 ? max : 4096) : 8 * prm_os_cpu_count();
    }
    return prmi_state.arena_limit;
}

static void append_arena(prm_arena *av)
{
    prm_arena *tail = &prmi_state.main_arena;
    while (tail->next != NULL)
        tail = tail->next;
    __atomic_store_n(&tail->next, av, __ATOMIC_RELEASE);
    prmi_state.arena_count++;
}

/* Under the list lock: the arena a thread should take now. */
static prm_arena *choose_arena(void)
{
    prm_arena *main = &prmi_state.main_arena;
    for (prm_arena *av = main; av != NULL; av = av->next)
        if (!av->abandoned && av->attached_threads == 0)
            return av;
    if (prmi_state.arena_count < arena_limit()) {
        prm_arena *av = prmi_new_arena(prmi_state.arena_count);
        if (av != NULL) {
            append_arena(av);
            return av;
        }
    }
    /* Share, round robin. */
    prm_arena *start = prmi_state.next_to_reuse ? prmi_state.next_to_reuse : main;
    prm_arena *av = start;
    do {
        prm_arena *next = av->next ? av->next : main;
        if (!av->abandoned) {
            prmi_state.next_to_reuse = next;
            return av;
        }
        av = next;
    } while (av != start);
    /* Every arena was abandoned by forks: a new one whatever the limit. */
    prm_arena *fresh = prmi_new_arena(prmi_state.arena_count);
    if (fresh != NULL)
        append_arena(fresh);
    return fresh;
}

/* Slow path of thread_arena(): first allocation of a thread, or its arena was abandoned
 * in a fork child. Returns NULL only if no arena can be had at all. */
prm_arena *prmi_attach_arena(void)
{
    prmi_main_arena();   /* initialise */
    prm_thread *self = &prmi_self;
    prm_arena *old = self->arena;

    prm_lock_acquire(&prmi_state.list_lock);
    if (old != NULL)
        old->attached_threads--;
    prm_arena *av = choose_arena();
    if (av != NULL)
        av->attached_threads++;
    self->arena = av;
    prm_lock_release(&prmi_state.list_lock);

    if (old == NULL && thread_exit_key_ready)
        pthread_setspecific(thread_exit_key, self);
    return av;
}

/* A thread ends: its cache goes back to the arenas and it lets go of its arena. Later
 * frees by this thread (other destructors) bypass the cache. */
static void thread_exit(void *state)
{
    prm_thread *self = state;
    prm_tcache *tc = self->tcache;
    self->tcache = PRM_TCACHE_DISABLED;
    if (tc > PRM_TCACHE_DISABLED)
        prmi_tcache_destroy(tc);
    prm_lock_acquire(&prmi_state.list_lock);
    if (self->arena != NULL)
        self->arena->attached_threads--;
    self->arena = NULL;
    prm_lock_release(&prmi_state.list_lock);
}

/* ---- fork ------------------------------------------------------------------------------------ */

/* The lock order, which fork cannot close into a cycle:
 *
 *     stdio's list lock  ->  the arena list lock  ->  each arena's lock, in list order
 *                        ->  the mapping registry's lock
 *
 * glibc's fork() runs the prepare handlers (ours takes every allocator lock) and then
 * takes stdio's list lock itself. Were that the whole story, this could deadlock: the
 * forking thread holds the arena locks and waits for the list lock; fflush(NULL) in
 * another thread holds the list lock and waits for some FILE's lock; that FILE's holder
 * is inside malloc (stdio allocating a buffer) waiting for an arena lock. glibc's own
 * malloc avoids the cycle by locking after the list lock, and so does this prepare
 * handler: it takes the list lock first (_IO_list_lock, exported by glibc; the lock is
 * recursive, so glibc taking it again in fork() is only a count), and nothing in the
 * allocator ever calls stdio while it holds a lock of its own. The parent handler gives
 * it back after ours; in the child glibc has already reset it. Like glibc, a process
 * that has only ever had one thread takes no list lock: nobody else can hold it.
 *
 * fork() may also run from a signal handler that interrupted this very thread:
 *   - inside malloc or free, holding an arena's lock. Waiting for that lock would
 *     deadlock (as jemalloc and tcmalloc do). The lock word holds its owner's thread id,
 *     so prepare sees the lock is its own and skips it; in the child that arena, which
 *     the interrupted code left mid-update, is abandoned and the child's allocations go
 *     to another arena. The per-thread cache stays usable: its updates are single stores
 *     that leave it consistent at any instruction.
 *   - inside fork() itself, between an outer prepare and its parent or child handler:
 *     fork inside fork, to any depth. So the handlers keep no global "what prepare took":
 *     each lock remembers the depth of the fork that took it (fork_level, 0: no fork
 *     handler holds it) and this thread counts its forks in progress (fork_depth). At
 *     depth d, prepare takes what no level holds and marks it d; a lock an outer level
 *     took is consistent and left as it is; a lock this thread holds with no level is
 *     the interrupted code's (the mid-update case above). The parent handler releases
 *     exactly the locks marked d; the child handler, the only thread of a new process,
 *     resets them all (an outer level's handler then finds nothing marked to release).
 *     A signal between taking a lock and marking it makes the lock look mid-update: the
 *     child abandons an arena it could have used, never the reverse. */

static __thread int fork_depth;             /* forks in progress in this thread */
static __thread uint64_t fork_stdio_levels; /* bit d: the fork at depth d took stdio's lock */
static int list_fork_level, registry_fork_level, quarantine_fork_level;

/* glibc's stdio list lock (libio), exported for exactly this; weak, so that a C library
 * without them (musl) simply leaves the order to stdio. */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));
extern void _IO_list_resetlock(void) __attribute__((weak));

/* Take a lock for the fork at `depth`, unless this thread holds it already (an outer
 * fork's prepare, or the code a signal interrupted). */
static void take_for_fork(prm_lock *lock, int *level, int depth)
{
    if (prm_lock_held_by_me(lock))
        return;
    prm_lock_acquire(lock);
    __atomic_store_n(level, depth, __ATOMIC_RELAXED);
}

/* Release a lock if the fork at `depth` took it: unmark first, so that a signal in
 * between sees a lock that is not a fork's (see above). */
static void release_for_fork(prm_lock *lock, int *level, int depth)
{
    if (__atomic_load_n(level, __ATOMIC_RELAXED) != depth)
        return;
    __atomic_store_n(level, 0, __ATOMIC_RELAXED);
    prm_lock_release(lock);
}

/* In the child: did the forking thread (its id `parent_tid`) hold this lock from the
 * code a signal interrupted, i.e. with no fork level? Then what it guards may be
 * mid-update. */
static bool held_mid_update(const prm_lock *lock, int level, int parent_tid)
{
    int owner = __atomic_load_n(&lock->word, __ATOMIC_RELAXED) & ~PRM_LOCK_WAITERS;
    return parent_tid != 0 && owner == parent_tid && level == 0;
}

static void fork_prepare(void)
{
    int depth = ++fork_depth;
    if (depth < 64 && !prm_single_threaded() && _IO_list_lock != NULL) {
        _IO_list_lock();
        fork_stdio_levels |= (uint64_t)1 << depth;
    }
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE))
        return;
    take_for_fork(&prmi_state.list_lock, &list_fork_level, depth);
    for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next)
        take_for_fork(&av->lock, &av->fork_level, depth);
    take_for_fork(&prmi_state.mmapped.lock, &registry_fork_level, depth);
    take_for_fork(prmi_quarantine_lock(), &quarantine_fork_level, depth);   /* a leaf: last */
}

static void fork_parent(void)
{
    int depth = fork_depth;
    if (__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE)) {
        release_for_fork(prmi_quarantine_lock(), &quarantine_fork_level, depth);
        release_for_fork(&prmi_state.mmapped.lock, &registry_fork_level, depth);
        for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next)
            release_for_fork(&av->lock, &av->fork_level, depth);
        release_for_fork(&prmi_state.list_lock, &list_fork_level, depth);
    }
    if (depth < 64 && (fork_stdio_levels & ((uint64_t)1 << depth))) {
        fork_stdio_levels &= ~((uint64_t)1 << depth);
        _IO_list_unlock();
    }
    fork_depth = depth - 1;
}

static void fork_child(void)
{
    int parent_tid = prmi_tls_tid;
    prmi_tls_tid = 0;   /* the child is a new thread id */
    fork_depth--;
    /* glibc has reset stdio's list lock if it took it; if only we did, reset it too. No
     * outer level holds it any more either. */
    if (fork_stdio_levels != 0 && _IO_list_resetlock != NULL)
        _IO_list_resetlock();
    fork_stdio_levels = 0;
    prm_lock_reset(&prmi_init_lock);
    if (prmi_rec_fork_child != NULL)
        prmi_rec_fork_child();
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE))
        return;
    prm_thread *self = &prmi_self;
    for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next) {
        if (held_mid_update(&av->lock, av->fork_level, parent_tid))
            av->abandoned = 1;
        av->fork_level = 0;
        av->attached_threads = 0;   /* the other threads do not exist here */
        prm_lock_reset(&av->lock);
    }
    if (self->arena != NULL && !self->arena->abandoned)
        self->arena->attached_threads = 1;
    if (held_mid_update(&prmi_state.mmapped.lock, registry_fork_level, parent_tid))
        prmi_state.mmapped.broken = 1;
    registry_fork_level = 0;
    prm_lock_reset(&prmi_state.mmapped.lock);
    quarantine_fork_level = 0;   /* the FIFO is only ever changed whole under the lock */
    prm_lock_reset(prmi_quarantine_lock());
    list_fork_level = 0;
    prm_lock_reset(&prmi_state.list_lock);
}

int prm_install_fork_handlers(void)
{
    static int installed;
    if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
        return 0;
    return pthread_atfork(fork_prepare, fork_parent, fork_child);
}
