/* memerror.h - what the memory-error programs share. Each program commits one class of
 * memory error; its header says what happens in the default build and in hardened mode
 * (hardened=1), each one of:
 *
 *   abort "CHECK"     the allocator aborts (SIGABRT) after one report line naming CHECK
 *   trap              the access faults (SIGSEGV): the memory is not there to touch
 *   missed: REASON    the program runs to its end ("misuse went unnoticed", exit 3)
 *
 * tests/test_memory_errors.py reads these lines and runs each program both ways. */
#ifndef MEMERROR_H
#define MEMERROR_H

#include <malloc.h>
#include <sys/mman.h>

#include "../misuse/misuse.h"

/* C23's sized frees: glibc 2.36 has neither, the preload library exports both (weak, so
 * the programs link without them). */
void free_sized(void *mem, size_t size) __attribute__((weak));
void free_aligned_sized(void *mem, size_t alignment, size_t size) __attribute__((weak));

/* Read a byte so that the compiler cannot drop the read. */
static inline void touch(const void *p)
{
    volatile const char *c = p;
    (void)*c;
}

#define LARGE ((size_t)256 * 1024)   /* past the mmap threshold: a block of its own */

#endif
