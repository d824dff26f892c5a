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
 * fork() may also be called from a signal handler that interrupted this very thread
 * inside malloc or free, holding an arena's lock: waiting for that lock would deadlock
 * (as jemalloc and tcmalloc do). The lock word holds its owner's thread id, so prepare
 * sees the lock is its own and skips it; in the child that arena, which the interrupted
 * code left mid-update, is abandoned and the child's allocations go to another arena.
 * The per-thread cache stays usable: its updates are single stores that leave it
 * consistent at any instruction. */
#include <pthread.h>

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

enum { FORK_NOT_TAKEN = 0, FORK_TAKEN = 1, FORK_MINE = 2 };

static int list_state, registry_state;

/* Take a lock for fork, unless the interrupted code of this very thread holds it. */
static int take_for_fork(prm_lock *lock)
{
    if (prm_lock_held_by_me(lock))
        return FORK_MINE;
    prm_lock_acquire(lock);
    return FORK_TAKEN;
}

static void fork_prepare(void)
{
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE))
        return;
    list_state = take_for_fork(&prmi_state.list_lock);
    for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next)
        av->fork_state = take_for_fork(&av->lock);
    registry_state = take_for_fork(&prmi_state.mmapped.lock);
}

static void fork_parent(void)
{
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE))
        return;
    if (registry_state == FORK_TAKEN)
        prm_lock_release(&prmi_state.mmapped.lock);
    for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next) {
        if (av->fork_state == FORK_TAKEN)
            prm_lock_release(&av->lock);
        av->fork_state = FORK_NOT_TAKEN;
    }
    if (list_state == FORK_TAKEN)
        prm_lock_release(&prmi_state.list_lock);
}

static void fork_child(void)
{
    prmi_tls_tid = 0;   /* the child is a new thread id */
    prm_lock_reset(&prmi_init_lock);
    if (prmi_rec_fork_child != NULL)
        prmi_rec_fork_child();
    if (!__atomic_load_n(&prmi_state.main_arena.initialized, __ATOMIC_ACQUIRE))
        return;
    prm_thread *self = &prmi_self;
    for (prm_arena *av = &prmi_state.main_arena; av != NULL; av = av->next) {
        if (av->fork_state == FORK_MINE)
            av->abandoned = 1;
        av->fork_state = FORK_NOT_TAKEN;
        av->attached_threads = 0;   /* the other threads do not exist here */
        prm_lock_reset(&av->lock);
    }
    if (self->arena != NULL && !self->arena->abandoned)
        self->arena->attached_threads = 1;
    if (registry_state == FORK_MINE)
        prmi_state.mmapped.broken = 1;
    prm_lock_reset(&prmi_state.mmapped.lock);
    prm_lock_reset(&prmi_state.list_lock);
}

int prm_install_fork_handlers(void)
{
    static int installed;
    if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
        return 0;
    return pthread_atfork(fork_prepare, fork_parent, fork_child);
}
