/* known_sites.c - the run report's test program (tests/test_report.py): allocation call
 * sites with known names and known numbers, so the report can be checked against them.
 *
 *   build_big_table   the biggest allocator: 48 rows of 64 KiB (3 MiB live at its peak),
 *                     of which it frees all but LEAKED_ROWS: the program's only leak
 *   churn_small       20,000 short-lived 32-byte blocks, each freed before the next
 *                     allocation (temporary allocations), the most calls
 *   map_one_big       one 1 MiB block (a mapped chunk), freed
 *   grow_buffer       a buffer grown by realloc to 256 KiB, freed
 *
 * No stdio (its buffer would be a second leak): the outcome goes out with write(2).
 * expect: top_peak=build_big_table leaked_bytes=327680 leaked_objects=5 temporary=20000
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TABLE_ROWS 48
#define ROW_BYTES 65536
#define LEAKED_ROWS 5
#define SMALL_BLOCKS 20000

static char **kept;             /* the leaked rows stay reachable until exit */

__attribute__((noinline)) void build_big_table(void)
{
    static char *rows[TABLE_ROWS];
    for (int i = 0; i < TABLE_ROWS; i++) {
        rows[i] = malloc(ROW_BYTES);
        if (!rows[i])
            _exit(3);
        memset(rows[i], i, ROW_BYTES);
    }
    for (int i = LEAKED_ROWS; i < TABLE_ROWS; i++)
        free(rows[i]);
    kept = rows;
}

__attribute__((noinline)) long churn_small(void)
{
    long sum = 0;
    for (int i = 0; i < SMALL_BLOCKS; i++) {
        volatile char *p = malloc(32);
        if (!p)
            _exit(3);
        p[0] = (char)i;
        sum += p[0];
        free((void *)p);
    }
    return sum;
}

__attribute__((noinline)) void map_one_big(void)
{
    char *p = malloc(1 << 20);
    if (!p)
        _exit(3);
    memset(p, 1, 1 << 20);
    free(p);
}

__attribute__((noinline)) void grow_buffer(void)
{
    char *p = NULL;
    for (size_t size = 1024; size <= 256 * 1024; size *= 2) {
        char *q = realloc(p, size);
        if (!q)
            _exit(3);
        p = q;
        p[size - 1] = 1;
    }
    free(p);
}

int main(void)
{
    build_big_table();
    long sum = churn_small();
    map_one_big();
    grow_buffer();
    const char done[] = "known_sites done\n";
    if (write(1, done, sizeof done - 1) < 0 || sum == -1 || !kept[0])
        return 1;
    return 0;
}
