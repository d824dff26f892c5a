/* remote.c - frees from threads that do not use the chunk's arena (the LD_PRELOAD build).
 *
 * A thread freeing a chunk of an arena it does not use (a consumer freeing what a producer
 * allocated) does not take that arena's lock: it pushes the chunk onto the arena's
 * lock-free stack (one CAS), and whoever next holds the arena's lock (its owner
 * allocating, usually) takes the whole stack with one exchange and frees each chunk for
 * real. Push and take-all never pop single entries, so the stack has no ABA problem.
 * Every PRM_REMOTE_BATCH pushes a thread offers to drain the arena it pushes to (if its
 * lock is free at that moment), so that an arena nobody allocates from any more cannot
 * hoard memory; malloc_trim drains too.
 *
 * A pending chunk keeps its in-use bits (it is freed only at the drain) and carries the
 * arena's remote key in its second word, as a cached chunk carries its cache: a second
 * free of it before the drain is named a double free. The drain checks each entry (its
 * key, its place in one of the arena's segments) before it frees it, and bounds its walk.
 * The Python build frees directly (its walks and statistics must see every free at once). */
#include "internal.h"
#include "prm.h"

#define PRM_REMOTE_BATCH 256
#define PRM_REMOTE_WALK_MAX ((size_t)1 << 32)   /* a longer stack is a cycle: corruption */

typedef struct prm_remote_entry {
    struct prm_remote_entry *next;
    uintptr_t key;
} prm_remote_entry;

static inline uintptr_t remote_key(prm_arena *av) { return ~(uintptr_t)&av->remote_head; }

/* Under av's lock: free every chunk other threads left on av's stack. */
PRM_NOINLINE void prmi_drain_remote_frees(prm_arena *av)
{
    prm_remote_entry *e = __atomic_exchange_n(&av->remote_head, NULL, __ATOMIC_ACQUIRE);
    size_t drained = 0;
    while (e != NULL) {
        if (prm_unlikely(drained > PRM_REMOTE_WALK_MAX || !aligned_ok((uintptr_t)e) ||
                         e->key != remote_key(av))) {
            av->remote_frees += drained;
            prmi_fail_arena(av, "free(): corrupted remote free list",
                            "an entry pushed by another thread's free was overwritten", e);
        }
        prm_remote_entry *next = e->next;
        prm_chunk *p = mem2chunk(e);
        e->key = 0;
        drained++;
        if (prm_unlikely(!prmi_in_our_heap(av, p))) {
            prmi_fail_pointer("free(): invalid pointer", "the chunk lies in no heap segment of ours", e);
        } else {
            account_free(av, p);
            prmi_int_free(av, p);
        }
        e = next;
    }
    av->remote_frees += drained;
}

/* Under av's lock: how many chunks wait on av's stack (the statistics). */
size_t prmi_remote_pending(prm_arena *av)
{
    size_t count = 0;
    for (prm_remote_entry *e = __atomic_load_n(&av->remote_head, __ATOMIC_ACQUIRE);
         e != NULL && count < PRM_REMOTE_WALK_MAX && aligned_ok((uintptr_t)e) && e->key == remote_key(av);
         e = e->next)
        count++;
    return count;
}

/* Push the chunk whose memory is mem onto av's stack. */
int prmi_push_remote_free(prm_arena *av, void *mem)
{
    prm_remote_entry *e = mem;
    if (prm_unlikely(e->key == remote_key(av)))
        return prmi_fail_pointer("free(): double free detected (remote)",
                                 "the chunk already waits to be freed in its arena", mem);
    e->key = remote_key(av);
    prm_remote_entry *head = __atomic_load_n(&av->remote_head, __ATOMIC_RELAXED);
    do
        e->next = head;
    while (!__atomic_compare_exchange_n(&av->remote_head, &head, e, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
    if (prm_unlikely(++prmi_self.remote_pushes >= PRM_REMOTE_BATCH)) {
        prmi_self.remote_pushes = 0;
        if (prm_lock_try_acquire(&av->lock)) {   /* busy: its holder will drain */
            if (!av->corrupt)
                prmi_drain_remote_frees(av);
            prm_lock_release(&av->lock);
        }
    }
    return PRM_OK;
}
