/* churn: random-size churn over a bounded live set.
 *
 * A table of 8192 slots per thread; each op picks a random slot, verifies and frees
 * the block in it (if any) and puts a new one there. Sizes follow a skewed, program-like
 * distribution: 50% 8-64 B, 35% 65-256 B, 14.8% 257 B-4 KiB and 0.2% 64 KiB-1 MiB
 * (log-uniform, past the 128 KiB mmap threshold for most of them). Every block is
 * touched (first bytes, last byte, one byte per page). This measures the general
 * malloc/free path under a mixed, non-LIFO pattern: bin searches, splitting and
 * coalescing, the mmap threshold, and the memory a live set of ~9 MiB costs.
 *
 * ops = block replacements (one malloc and, once the slot is full, one free). With -t T,
 * T threads each run their share on their own table. */
#include "workload.h"

#define SLOTS 8192

struct slot {
    unsigned char *p;
    size_t size;
    uint64_t key;
};

static struct opts o;

static size_t pick_size(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 1000;
    if (r < 500)
        return rng_range(rng, 8, 64);
    if (r < 850)
        return rng_range(rng, 65, 256);
    if (r < 998)
        return rng_range(rng, 257, 4096);
    unsigned e = 16 + rng_next(rng) % 4;                /* 64 KiB .. 1 MiB */
    return ((size_t)1 << e) + rng_next(rng) % ((size_t)1 << e);
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t rng = rng_seed(o.seed, tid), ops = share(o.n, o.threads, tid), sum = 0;
    struct slot *table = calloc(SLOTS, sizeof *table);
    if (!table)
        die("out of memory");
    for (uint64_t i = 0; i < ops; i++) {
        struct slot *s = &table[rng_next(&rng) % SLOTS];
        if (s->p) {
            sum += verify(s->p, s->size, s->key, "churn");
            free(s->p);
        }
        s->size = pick_size(&rng);
        s->key = ((uint64_t)tid << 48) ^ i;
        s->p = xmalloc(s->size);
        fill(s->p, s->size, s->key);
    }
    for (unsigned j = 0; j < SLOTS; j++)
        if (table[j].p) {
            sum += verify(table[j].p, table[j].size, table[j].key, "churn");
            free(table[j].p);
        }
    free(table);
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "random-size churn over a bounded live set of 8192 slots per thread",
                   5000000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
