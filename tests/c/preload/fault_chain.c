/* fault_chain.c - hardened mode's fault handler (csrc/core/faults.c) with other faults
 * around it.
 *
 *   fault_chain wild      a fault in memory that is not the allocator's: no report, the
 *                         program dies of SIGSEGV as without the library
 *   fault_chain recover   the program installs its own SIGSEGV handler after the library
 *                         (as a runtime with a write barrier would) and recovers from a
 *                         wild fault and from a touch of a zero-size block: both reach
 *                         its handler, and it prints "recovered 2"
 *   fault_chain named     a touch of a zero-size block with no handler of the program's:
 *                         one named line, then death by SIGSEGV */
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sigjmp_buf resume;
static volatile int recovered;

static void recover(int signal)
{
    (void)signal;
    recovered++;
    siglongjmp(resume, 1);
}

static void *volatile launder;

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    free(malloc(32));                            /* the library is initialised */
    volatile char *volatile wild = (volatile char *)16;   /* a page nobody maps */
    launder = malloc(0);
    volatile char *volatile zero = launder;
    if (strcmp(mode, "wild") == 0) {
        *wild = 1;
    } else if (strcmp(mode, "recover") == 0) {
        signal(SIGSEGV, recover);
        if (!sigsetjmp(resume, 1))
            *wild = 1;
        if (!sigsetjmp(resume, 1))
            *zero = 1;
        printf("recovered %d\n", recovered);
        return 0;
    } else if (strcmp(mode, "named") == 0) {
        (void)*zero;
    }
    return 3;
}
