/* pairs: the malloc/free fast path.
 *
 * For each size 16, 32, 64, 128, 256, 512 and 1024 bytes, a tight loop of malloc,
 * write one byte, read it back, free (LIFO: the block just freed comes straight back,
 * from a per-thread cache or a fast bin); then the same sizes through a ring of 8 live
 * blocks per size, so that every free returns a block other than the one just
 * allocated (FIFO order over 8 blocks). No page faults and almost no cache misses:
 * this is the allocator's hottest path, its instructions and locks per pair.
 *
 * ops = malloc/free pairs, split evenly over the 14 (variant, size) runs. With -t T,
 * T threads each do their share of all 14 runs on their own blocks. */
#include "workload.h"

static const size_t sizes[] = {16, 32, 64, 128, 256, 512, 1024};
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define RING 8

static struct opts o;

static uint64_t lifo(size_t size, uint64_t iters, uint64_t salt)
{
    uint64_t h = salt;
    for (uint64_t i = 0; i < iters; i++) {
        unsigned char *p = xmalloc(size);
        p[size - 1] = (unsigned char)(i + salt);
        escape(p);
        h = (h ^ p[size - 1]) * 0x100000001b3ull;
        free(p);
    }
    return h;
}

static inline unsigned char ring_value(uint64_t j, uint64_t salt)
{
    return (unsigned char)(salt + j * 7);
}

static uint64_t ring(size_t size, uint64_t iters, uint64_t salt)
{
    unsigned char *r[RING];
    uint64_t h = salt;
    for (uint64_t j = 0; j < RING; j++) {       /* block j is freed by iteration j */
        r[j] = xmalloc(size);
        r[j][size - 1] = ring_value(j, salt);
        escape(r[j]);
    }
    for (uint64_t i = 0; i < iters + RING; i++) {
        unsigned char *p = r[i % RING];
        if (p[size - 1] != ring_value(i, salt))
            die("pairs: ring block of %zu bytes corrupted", size);
        h = (h ^ p[size - 1]) * 0x100000001b3ull;
        free(p);
        if (i < iters) {                        /* the last RING iterations only drain */
            p = xmalloc(size);
            p[size - 1] = ring_value(i + RING, salt);
            escape(p);
            r[i % RING] = p;
        }
    }
    return h;
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t mine = share(o.n, o.threads, tid), sum = 0;
    for (unsigned j = 0; j < 2 * NSIZES; j++) {
        uint64_t iters = share(mine, 2 * NSIZES, j);
        uint64_t salt = mix64(o.seed + ((uint64_t)tid << 32) + j);
        size_t size = sizes[j % NSIZES];
        uint64_t h = j < NSIZES ? lifo(size, iters, salt) : ring(size, iters, salt);
        sum += mix64(h + iters);
    }
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "malloc/free pairs per size class 16 B..1 KiB, LIFO and a ring of 8",
                   60000000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
