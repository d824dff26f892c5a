/* lab_test.c - the lab's policies driven directly from C under AddressSanitizer and
 * UndefinedBehaviorSanitizer, with the policies' invariant assertions on (LAB_DEBUG):
 * random malloc/free/realloc/memalign with a pattern in every block, the walk checked
 * for overlaps after each step, everything freed at the end; then a replay of the same
 * kind of trace through lab_replay with verification. One check per policy, named on
 * the command line; prints "ok NAME". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lab/lab.h"

#define CHECK(cond, what) do { if (!(cond)) { printf("FAIL %s: %s (line %d)\n", name, what, __LINE__); exit(1); } } while (0)

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

struct live {
    unsigned char *p;
    size_t size;
    unsigned char fill;
};

static int compare_blocks(const void *a, const void *b)
{
    const struct lab_block *x = a, *y = b;
    return x->span_start < y->span_start ? -1 : x->span_start > y->span_start;
}

static void check_walk(const char *name, struct lab_policy *policy, const struct live *live,
                       size_t n_live)
{
    static struct lab_block blocks[1 << 16];
    long n = lab_walk(policy, blocks, 1 << 16);
    CHECK(n >= 0 && n <= (1 << 16), "walk");
    size_t used = 0;
    for (long i = 0; i < n; i++) {
        if (i)
            CHECK(blocks[i].span_start >= blocks[i - 1].span_start + blocks[i - 1].span_size,
                  "walk entries do not overlap and come in address order");
        used += blocks[i].kind == LAB_BLOCK_USED;
    }
    CHECK(used == n_live, "every live block is in the walk, and only those");
    for (size_t k = 0; k < n_live; k++) {
        struct lab_block key = {.span_start = 0};
        (void)key;
        int found = 0;
        for (long i = 0; i < n && !found; i++)
            found = blocks[i].kind == LAB_BLOCK_USED
                    && blocks[i].address == (uint64_t)(uintptr_t)live[k].p;
        CHECK(found, "a live block appears in the walk at its address");
    }
    qsort(blocks, (size_t)n, sizeof blocks[0], compare_blocks);
}

static void churn(const char *name, int kind)
{
    struct lab_config config = {.kind = kind, .region_size = 1 << 20};
    struct lab_policy *policy;
    CHECK(lab_policy_new(&config, &policy) == LAB_OK, "policy_new");
    static struct live live[512];
    size_t n_live = 0;
    for (int step = 0; step < 3000; step++) {
        uint64_t r = next_random();
        if (n_live && (r % 100 < 45 || n_live == 512)) {
            size_t k = (r >> 8) % n_live;
            for (size_t i = 0; i < live[k].size; i++)
                CHECK(live[k].p[i] == live[k].fill, "a block keeps its contents");
            if (r % 7 == 0) {
                size_t size = (r >> 20) % 600;
                unsigned char *q = lab_realloc(policy, live[k].p, size);
                if (q) {
                    size_t kept = size < live[k].size ? size : live[k].size;
                    for (size_t i = 0; i < kept; i++)
                        CHECK(q[i] == live[k].fill, "realloc keeps the contents");
                    memset(q, live[k].fill, size);
                    live[k].p = q;
                    live[k].size = size;
                }
            } else {
                lab_free(policy, live[k].p);
                live[k] = live[--n_live];
            }
        } else {
            size_t size = (r >> 8) % (r % 5 == 0 ? 3000 : 200);
            size_t align = r % 11 == 0 ? (size_t)1 << (4 + (r >> 40) % 5) : 16;
            unsigned char *p = align > 16 ? lab_memalign(policy, align, size)
                                          : lab_malloc(policy, size);
            if (!p)
                continue;
            CHECK(((uintptr_t)p & (align - 1)) == 0, "aligned");
            CHECK(lab_usable_size(policy, p) >= size, "usable size covers the request");
            live[n_live].p = p;
            live[n_live].size = size;
            live[n_live].fill = (unsigned char)(step | 1);
            memset(p, live[n_live].fill, size);
            n_live++;
        }
        if (step % 97 == 0)
            check_walk(name, policy, live, n_live);
    }
    while (n_live)
        lab_free(policy, live[--n_live].p);
    check_walk(name, policy, live, 0);
    struct lab_stats stats;
    lab_stats(policy, &stats);
    if (kind != LAB_MINIMAL && kind != LAB_BITMAP && kind != LAB_SLAB)
        CHECK(stats.free_total == stats.free_largest, "everything freed is one free block");

    /* The same through the replay loop, verified. */
    static struct lab_op ops[20000];
    size_t n_ops = 0, n_objects = 0;
    static uint64_t ids[1000];
    size_t n_ids = 0;
    while (n_ops < 20000) {
        uint64_t r = next_random();
        if (n_ids && (r % 100 < 45 || n_ids == 1000)) {
            size_t k = (r >> 8) % n_ids;
            int realloc_op = r % 5 == 0;
            ops[n_ops++] = (struct lab_op){.op = realloc_op ? LAB_OP_REALLOC : LAB_OP_FREE,
                                           .id = ids[k], .size = (r >> 16) % 700};
            if (!realloc_op)
                ids[k] = ids[--n_ids];
        } else {
            int op = r % 13 == 0 ? LAB_OP_CALLOC : r % 17 == 0 ? LAB_OP_MEMALIGN : LAB_OP_MALLOC;
            ops[n_ops++] = (struct lab_op){.op = (uint8_t)op, .align_log2 = 6,
                                           .id = n_objects, .size = (r >> 8) % 400};
            ids[n_ids++] = n_objects++;
        }
    }
    struct lab_replay_options options = {.verify = 1, .free_remaining = 1, .sample_every = 500};
    static struct lab_sample samples[64];
    struct lab_replay_result result;
    int status = lab_replay(policy, ops, n_ops, n_objects, &options, samples, 64, &result);
    if (status != LAB_OK)
        printf("replay status %d at op %llu check %d\n", status,
               (unsigned long long)result.error_op, result.error_detail);
    CHECK(status == LAB_OK, "the replay verifies");
    CHECK(result.ops == n_ops && result.samples > 2, "the replay ran every op and sampled");
    lab_policy_delete(policy);
}

static const struct { const char *name; int kind; } checks[] = {
    {"minimal", LAB_MINIMAL}, {"first_fit", LAB_FIRST_FIT}, {"next_fit", LAB_NEXT_FIT},
    {"best_fit", LAB_BEST_FIT}, {"worst_fit", LAB_WORST_FIT}, {"buddy", LAB_BUDDY},
    {"buddy_pool", LAB_BUDDY_POOL}, {"bitmap", LAB_BITMAP}, {"slab", LAB_SLAB},
};

int main(int argc, char **argv)
{
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if (argc > 1 && strcmp(argv[1], checks[i].name) == 0) {
            churn(checks[i].name, checks[i].kind);
            printf("ok %s\n", checks[i].name);
            return 0;
        }
    printf("unknown check\n");
    return 2;
}
