/* callstack.h - the recorder's call stacks (option stacks=all|sampled|off, sample=BYTES):
 * capturing the native stack of an allocation, deciding which allocations carry one
 * (every one, or sampled by bytes allocated), and the table that gives each distinct
 * stack a small id so the trace names a stack once and refers to it by id after.
 *
 * Capturing uses libunwind's unw_backtrace (Debian's libunwind-dev, installed by the
 * Makefile's `unwind` target): on x86-64 it caches, per thread, how to step out of each
 * return address it has seen, so a stack it has walked before costs a few nanoseconds a
 * frame and no DWARF interpretation. It never calls malloc (its memory comes from mmap)
 * and takes its locks with signals blocked. Frame-pointer walking is not safe here:
 * Debian's CPython, libc and libstdc++ are built without frame pointers. Without
 * libunwind at build time the library records no stacks (the trace's header says so).
 *
 * Everything here is called only while tracing, from the hooks in trace.c; capture
 * runs outside every lock, intern under the recorder's lock. */
#ifndef PRM_CALLSTACK_H
#define PRM_CALLSTACK_H

#include <stddef.h>
#include <stdint.h>

#include "glue.h"

#define PRMI_STACK_DEPTH 64             /* frames kept per stack, innermost first */

enum prmi_stack_mode { PRMI_STACKS_OFF = 0, PRMI_STACKS_ALL = 1, PRMI_STACKS_SAMPLED = 2 };

/* Whether this build can capture stacks (it was linked with libunwind). */
PRM_INTERNAL int prmi_stack_available(void);

/* The sampling decision for an allocation of `size` bytes in sampled mode: a per-thread
 * countdown of bytes, reset to a random exponential interval of mean `mean` bytes each
 * time it runs out (tcmalloc's and jemalloc's scheme), so an allocation of s bytes is
 * sampled with probability 1 - exp(-s / mean), whatever the pattern of sizes. */
PRM_INTERNAL int prmi_stack_sampled(size_t size, uint64_t mean);

/* This thread's stack into `frames` (at most PRMI_STACK_DEPTH); the number of frames, 0
 * when this thread is already capturing (a signal handler's allocation, or libunwind's
 * own) or the build cannot. Never allocates, never takes our locks. */
PRM_INTERNAL int prmi_stack_capture(uintptr_t *frames);

/* Set up the table of stacks (one mmap); -1 when the kernel refused. */
PRM_INTERNAL int prmi_stack_table_setup(void);

/* Under the recorder's lock: the id (1, 2, ...) of this stack, and *is_new when this is
 * its first appearance (the caller then writes its definition). 0 when the table is
 * full: the operation is then recorded without a stack. */
PRM_INTERNAL uint32_t prmi_stack_intern(const uintptr_t *frames, int depth, int *is_new);

/* The fork child: its thread-local state is the forking thread's, keep nothing. */
PRM_INTERNAL void prmi_stack_fork_child(void);

#endif
