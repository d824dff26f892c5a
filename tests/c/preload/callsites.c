/* callsites.c - a program whose allocations are known by function, for the recorder's
 * call sites (tests/test_callsites.py): build_big_table() holds the most bytes at the
 * program's peak (40 blocks of 64 KiB, freed before exit), leak_some() leaks exactly
 * LEAKED bytes, one block above the mmap threshold is mapped and unmapped, and a
 * churn of small blocks comes last. Functions are noinline so each is a frame of its
 * own; pointers go through a volatile array so the compiler keeps every call. */
#include <stdlib.h>
#include <string.h>

#define BIG_BLOCKS 40
#define BIG_SIZE   (64 * 1024)
#define LEAKED     (3 * 1000 + 4000)     /* the test's expectation */

static void *volatile keep[BIG_BLOCKS + 8];

static __attribute__((noinline)) void build_big_table(void)
{
    for (int i = 0; i < BIG_BLOCKS; i++) {
        keep[i] = malloc(BIG_SIZE);
        memset(keep[i], i, 64);
    }
}

static __attribute__((noinline)) void drop_big_table(void)
{
    for (int i = 0; i < BIG_BLOCKS; i++)
        free(keep[i]);
}

static __attribute__((noinline)) void leak_some(void)
{
    for (int i = 0; i < 3; i++)
        keep[BIG_BLOCKS + i] = malloc(1000);
    keep[BIG_BLOCKS + 3] = malloc(4000);
}

static __attribute__((noinline)) void map_one(void)
{
    char *block = malloc(1 << 20);
    block[0] = 1;
    keep[BIG_BLOCKS + 4] = block;
    free(block);
}

static __attribute__((noinline)) void churn(void)
{
    for (int i = 0; i < 1000; i++) {
        keep[BIG_BLOCKS + 5] = malloc(24);
        free(keep[BIG_BLOCKS + 5]);
    }
}

int main(void)
{
    build_big_table();
    leak_some();
    map_one();
    drop_big_table();
    churn();
    return 0;
}
