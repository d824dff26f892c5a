/* page_pairs: malloc/free pairs of 4 KiB.
 *
 * pairs.c's two loops for the one size 4096 bytes: malloc, write the last byte, read it
 * back, free (LIFO: the block just freed comes straight back); then through a ring of 8
 * live blocks, so that every free returns a block other than the one just allocated.
 * A page-sized request is past many allocators' small size classes and per-thread
 * caches (glibc's tcache stops at 1032 bytes), so this measures what a 4 KiB pair
 * costs on the path it does take: a larger class, a bin, a page run or the top chunk.
 *
 * ops = malloc/free pairs, split evenly over the two loops. With -t T, T threads each
 * do their share of both on their own blocks. */
#include "workload.h"

#define SIZE 4096
#define RING 8

static struct opts o;

static uint64_t lifo(uint64_t iters, uint64_t salt)
{
    uint64_t h = salt;
    for (uint64_t i = 0; i < iters; i++) {
        unsigned char *p = xmalloc(SIZE);
        p[SIZE - 1] = (unsigned char)(i + salt);
        escape(p);
        h = (h ^ p[SIZE - 1]) * 0x100000001b3ull;
        free(p);
    }
    return h;
}

static inline unsigned char ring_value(uint64_t j, uint64_t salt)
{
    return (unsigned char)(salt + j * 7);
}

static uint64_t ring(uint64_t iters, uint64_t salt)
{
    unsigned char *r[RING];
    uint64_t h = salt;
    for (uint64_t j = 0; j < RING; j++) {       /* block j is freed by iteration j */
        r[j] = xmalloc(SIZE);
        r[j][SIZE - 1] = ring_value(j, salt);
        escape(r[j]);
    }
    for (uint64_t i = 0; i < iters + RING; i++) {
        unsigned char *p = r[i % RING];
        if (p[SIZE - 1] != ring_value(i, salt))
            die("page_pairs: ring block corrupted");
        h = (h ^ p[SIZE - 1]) * 0x100000001b3ull;
        free(p);
        if (i < iters) {                        /* the last RING iterations only drain */
            p = xmalloc(SIZE);
            p[SIZE - 1] = ring_value(i + RING, salt);
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
    for (unsigned j = 0; j < 2; j++) {
        uint64_t iters = share(mine, 2, j);
        uint64_t salt = mix64(o.seed + ((uint64_t)tid << 32) + j);
        uint64_t h = j == 0 ? lifo(iters, salt) : ring(iters, salt);
        sum += mix64(h + iters);
    }
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "malloc/free pairs of 4 KiB, LIFO and a ring of 8",
                   40000000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
