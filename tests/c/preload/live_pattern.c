/* live_pattern.c - a program to look at from outside (`pymalloc-real top/heap PID`,
 * tests/test_live.py): it allocates a known pattern, says "ready" on stdout with the
 * addresses of its blocks, then waits on stdin without allocating, so the live view and
 * the program's own exit report (stats=) see the same heap.
 *
 * The pattern (chunk sizes on 64-bit: request + 8, rounded up to 16, at least 32):
 *   SMALL_COUNT blocks of SMALL_BYTES, every other one freed again (the thread cache
 *     keeps the first 7 of them, the rest go to the fast bins);
 *   MEDIUM_COUNT blocks of MEDIUM_BYTES, every other one freed (beyond the thread cache's
 *     large classes: they land in the unsorted bin, then small or large bins);
 *   MAPPED_COUNT blocks of MAPPED_BYTES, above the mmap threshold: one mapping each.
 * A line on stdin ends the program; it frees nothing more, so what is live at the
 * snapshot is what the exit report calls in_use_at_exit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SMALL_COUNT 64
#define SMALL_BYTES 100
#define MEDIUM_COUNT 16
#define MEDIUM_BYTES 40000
#define MAPPED_COUNT 2
#define MAPPED_BYTES (512 * 1024)

static void *small[SMALL_COUNT], *medium[MEDIUM_COUNT], *mapped[MAPPED_COUNT];
int main(void)
{
    for (int i = 0; i < SMALL_COUNT; i++)
        memset(small[i] = malloc(SMALL_BYTES), 0x11, SMALL_BYTES);
    for (int i = 0; i < MEDIUM_COUNT; i++)
        memset(medium[i] = malloc(MEDIUM_BYTES), 0x22, MEDIUM_BYTES);
    for (int i = 0; i < MAPPED_COUNT; i++)
        memset(mapped[i] = malloc(MAPPED_BYTES), 0x33, MAPPED_BYTES);
    for (int i = 0; i < SMALL_COUNT; i += 2)
        free(small[i]);
    for (int i = 0; i < MEDIUM_COUNT; i += 2)
        free(medium[i]);

    /* One line, formatted on the stack and written with write(2): no stdio buffer. */
    char line[256];
    int n = snprintf(line, sizeof line, "ready %p %p %p\n", small[1], medium[1], mapped[0]);
    if (write(1, line, (size_t)n) != n)
        return 4;
    char c;
    while (read(0, &c, 1) == 1 && c != '\n')
        ;
    return 0;
}
