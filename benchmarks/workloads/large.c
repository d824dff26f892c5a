/* large: big blocks around and above the mmap threshold.
 *
 * A live set of 4 slots per thread; each op verifies and frees the block in a random
 * slot and allocates a new one of 64 KiB-8 MiB (log-uniform), writing one byte in
 * every page. Every page of a block fresh from the kernel costs a page fault, so this
 * measures what the allocator does with large frees: unmap at once (every reuse faults
 * again), keep them in the heap (a dynamic mmap threshold, as glibc's), or cache and
 * decay them; and the mmap/munmap/madvise system calls that go with it.
 *
 * ops = allocations (each also frees the block it replaces). With -t T, T threads each
 * do their share with their own 4 slots. */
#include "workload.h"

#define LIVE 4

static struct opts o;

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t rng = rng_seed(o.seed, tid), ops = share(o.n, o.threads, tid), sum = 0;
    unsigned char *p[LIVE] = {0};
    size_t size[LIVE] = {0};
    uint64_t key[LIVE] = {0};
    for (uint64_t i = 0; i < ops; i++) {
        unsigned j = rng_next(&rng) % LIVE, e = 16 + rng_next(&rng) % 7;
        if (p[j]) {
            sum += verify(p[j], size[j], key[j], "large");
            free(p[j]);
        }
        size[j] = ((size_t)1 << e) + rng_next(&rng) % ((size_t)1 << e);   /* 64 KiB..8 MiB */
        key[j] = ((uint64_t)tid << 48) | i;
        p[j] = xmalloc(size[j]);
        fill(p[j], size[j], key[j]);
    }
    for (unsigned j = 0; j < LIVE; j++)
        if (p[j]) {
            sum += verify(p[j], size[j], key[j], "large");
            free(p[j]);
        }
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "64 KiB-8 MiB blocks, every page touched, 4 live per thread",
                   5000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
