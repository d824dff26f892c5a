/* frag: fragmentation in phases, and the memory it costs.
 *
 * Each round: (1) allocate 131072 small blocks of 16-256 B; (2) free every other one,
 * leaving holes no bigger than one small block between live neighbours; (3) allocate
 * larger blocks of 512 B-2 KiB, as many bytes as were freed, none of which fits a hole;
 * (4) free everything. All blocks are filled and verified. Rounds repeat until -n
 * small blocks have been allocated (the last round may be shorter).
 * The time measures bin searches and coalescing with a fragmented heap; the memory
 * line measures the cost of the holes at the peak (ideal: about 1.5x the small
 * blocks' bytes, since the holes cannot be reused) and how much the allocator hands
 * back to the kernel once everything is free.
 *
 * Output adds peak_rss_kb (getrusage ru_maxrss) and end_rss_kb (resident set from
 * /proc/self/statm after the last free). ops = small blocks allocated. Single-threaded. */
#include <sys/resource.h>

#include "workload.h"

#define ROUND 131072

struct blk {
    unsigned char *p;
    size_t size;
};

static long resident_kb(void)
{
    long pages_total, pages_resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages_total, &pages_resident) != 2)
        die("cannot read /proc/self/statm");
    fclose(f);
    return pages_resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void take(struct blk *b, size_t size, uint64_t key)
{
    b->size = size;
    b->p = xmalloc(size);
    fill(b->p, size, key);
}

static uint64_t give(struct blk *b, uint64_t key)
{
    uint64_t h = verify(b->p, b->size, key, "frag");
    free(b->p);
    b->p = NULL;
    return h;
}

int main(int argc, char **argv)
{
    struct opts o = parse_args(argc, argv, "fragmenting phases; reports peak and end RSS",
                               4000000, 1, 1, 1);
    uint64_t rng = rng_seed(o.seed, 0), sum = 0;
    struct blk *small = calloc(ROUND, sizeof *small), *big = calloc(ROUND, sizeof *big);
    if (!small || !big)
        die("out of memory");
    for (uint64_t done = 0, round = 0; done < o.n; round++) {
        size_t m = o.n - done < ROUND ? (size_t)(o.n - done) : ROUND, nbig = 0, freed = 0, got = 0;
        uint64_t base = round << 40;
        for (size_t i = 0; i < m; i++)                          /* (1) many small blocks */
            take(&small[i], rng_range(&rng, 16, 256), base + i);
        for (size_t i = 1; i < m; i += 2) {                     /* (2) every other one */
            freed += small[i].size;
            sum += give(&small[i], base + i);
        }
        while (got < freed) {                                   /* (3) nothing fits a hole */
            take(&big[nbig], rng_range(&rng, 512, 2048), base + ROUND + nbig);
            got += big[nbig++].size;
        }
        for (size_t i = 0; i < m; i += 2)                       /* (4) free all */
            sum += give(&small[i], base + i);
        for (size_t i = 0; i < nbig; i++)
            sum += give(&big[i], base + ROUND + i);
        done += m;
    }
    free(small);
    free(big);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        die("getrusage failed");
    char extra[80];
    snprintf(extra, sizeof extra, " peak_rss_kb=%ld end_rss_kb=%ld", ru.ru_maxrss, resident_kb());
    finish(sum, &o, extra);
    return 0;
}
