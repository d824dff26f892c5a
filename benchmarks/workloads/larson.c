/* larson: a server simulation in the style of Larson and Krishnan (1998).
 *
 * T threads share one array of 16384 slots. Each op: allocate a block (95% 16-512 B,
 * 5% 513 B-4 KiB), stamp it with its id and size, swap it into a random slot with one
 * atomic exchange, and verify and free the block it displaced. The displaced block was
 * usually allocated by another thread, so most frees are remote: this measures how an
 * allocator handles blocks that migrate between threads (arena locks, remote-free
 * queues, per-thread caches that fill on one thread and drain on another) and the
 * false sharing its placement causes.
 *
 * ops = allocations (each also frees the block it displaces; the array is emptied at
 * the end). The checksum is a sum over every block of a hash of its id and contents:
 * which thread frees a block depends on the schedule, the sum does not. */
#include <stdatomic.h>

#include "workload.h"

#define SLOTS 16384

static _Atomic(unsigned char *) slots[SLOTS];
static struct opts o;

static size_t pick_size(uint64_t *rng)
{
    if (rng_next(rng) % 100 < 95)
        return rng_range(rng, 16, 512);
    return rng_range(rng, 513, 4096);
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t rng = rng_seed(o.seed, tid), ops = share(o.n, o.threads, tid), sum = 0;
    for (uint64_t i = 0; i < ops; i++) {
        size_t size = pick_size(&rng);
        unsigned char *p = xmalloc(size);
        stamp(p, size, ((uint64_t)tid << 40) | i);
        unsigned char *old = atomic_exchange_explicit(&slots[rng_next(&rng) % SLOTS], p,
                                                      memory_order_acq_rel);
        if (old) {
            sum += unstamp(old, "larson");
            free(old);
        }
    }
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "threads replace random slots of a shared array (remote frees)",
                   5000000, 2, 1, MAX_THREADS);
    uint64_t sum = run_threads(o.threads, worker, NULL);
    for (unsigned j = 0; j < SLOTS; j++) {
        unsigned char *p = atomic_load(&slots[j]);
        if (p) {
            sum += unstamp(p, "larson");
            free(p);
        }
    }
    finish(sum, &o, "");
    return 0;
}
