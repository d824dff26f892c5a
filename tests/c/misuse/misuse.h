/* misuse.h - what the misuse corpus programs share. Each program commits one misuse of
 * the allocator; its header comment says what must happen:
 *
 *   expect: abort "CHECK"   the allocator aborts (SIGABRT) after the one-line report
 *                           naming CHECK ("pymalloc_real: CHECK: ...")
 *   expect: exit 0          the call fails the documented way and the program goes on
 *
 * tests/test_misuse_corpus.py reads these lines. A program that reaches its end after
 * a misuse meant to abort prints "misuse went unnoticed" and exits 3.
 *
 * opaque() hides a pointer's origin from the compiler, so it neither warns about nor
 * optimises away a misuse it can see (free of a stack array, use after free). */
#ifndef MISUSE_H
#define MISUSE_H

#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile misuse_launder;

static inline void *opaque(void *p)
{
    misuse_launder = p;
    return misuse_launder;
}

/* pymalloc_real's mallopt number for tcache_grow (csrc/core/prm.h); glibc ignores it. */
#define MISUSE_TCACHE_GROW (-102)

/* Fill the thread cache's bin for `size` (7 entries by default) so that the next free
 * of that size goes to the arena's bins. Our cache's bins grow when they overflow
 * (tcache_grow), which would take that free too: growth is turned off first, so the bin
 * stays at glibc's 7 and the arena's own checks are the ones exercised. */
static inline void fill_thread_cache(size_t size)
{
    mallopt(MISUSE_TCACHE_GROW, 0);
    void *held[7];
    for (int i = 0; i < 7; i++)
        held[i] = malloc(size);
    for (int i = 0; i < 7; i++)
        free(held[i]);
}

static inline int unnoticed(void)
{
    static const char line[] = "misuse went unnoticed\n";
    ssize_t ignored = write(2, line, sizeof line - 1);
    (void)ignored;
    return 3;
}

#endif
