/* mixed: random sizes from 8 bytes to 8 KiB replacing each other in one thread.
 *
 * A live set of 2000 slots per thread, all filled before the first op. Each op picks a
 * random slot, verifies and frees its block and puts a new one there, of a size
 * log-uniform in [8, 8191] bytes (an octave 8-15, 16-31, ..., 4096-8191 picked
 * uniformly, then a size uniformly within it), filled with fill() (first bytes, last
 * byte, one byte per page). Every op is exactly one malloc and one free, of unrelated
 * sizes and in no LIFO order: this measures the allocator's general small and medium
 * path (size classes or bins across the whole range, per-thread caches that miss,
 * splitting and coalescing) rather than its best case, with ~2.4 MB live per thread.
 *
 * ops = replacements (one malloc+free pair each; the initial fill and the final frees
 * are not counted). With -t T, T threads each do their share on their own table. */
#include "workload.h"

#define SLOTS 2000

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t key;
};

static struct opts o;

static size_t pick_size(uint64_t *rng)
{
    unsigned e = 3 + (unsigned)(rng_next(rng) % 10);            /* 8 B .. 4 KiB octaves */
    size_t size = ((size_t)1 << e) + rng_next(rng) % ((size_t)1 << e);
    if (size < 8)                      /* never: tells gcc fill() copies 8 bytes inline */
        __builtin_unreachable();
    return size;
}

static void put(struct slot *s, uint64_t *rng, uint64_t key)
{
    s->size = pick_size(rng);
    s->key = key;
    s->p = xmalloc(s->size);
    fill(s->p, s->size, s->key);
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t rng = rng_seed(o.seed, tid), ops = share(o.n, o.threads, tid), sum = 0;
    uint64_t base = (uint64_t)tid << 48;
    struct slot *table = xmalloc(SLOTS * sizeof *table);
    for (unsigned j = 0; j < SLOTS; j++)
        put(&table[j], &rng, base | (1ull << 40) | j);
    for (uint64_t i = 0; i < ops; i++) {
        struct slot *s = &table[rng_next(&rng) % SLOTS];
        sum += verify(s->p, s->size, s->key, "mixed");
        free(s->p);
        put(s, &rng, base | i);
    }
    for (unsigned j = 0; j < SLOTS; j++) {
        sum += verify(table[j].p, table[j].size, table[j].key, "mixed");
        free(table[j].p);
    }
    free(table);
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "malloc+free pairs of random sizes 8 B..8 KiB over 2000 live "
                   "blocks per thread", 10000000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
