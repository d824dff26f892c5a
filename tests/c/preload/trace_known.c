/* trace_known.c - an allocation sequence known exactly, for the recorder (trace=PATH):
 * every call the library exports, realloc keeping an object's identity, realloc(NULL, n)
 * and realloc(p, 0), a second thread, a block above the mmap threshold, a fork whose
 * child allocates (and must not write into the parent's trace), and a loop that reuses
 * one address many times. tests/test_trace.py holds the same sequence as text.
 *
 * Every size here is unusual on purpose: libc's own allocations (thread creation's
 * DTV, for instance) are told apart by their sizes. No stdio: it would allocate. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void fail(const char *what)
{
    (void)!write(2, what, __builtin_strlen(what));
    (void)!write(2, "\n", 1);
    _exit(1);
}

static void *worker(void *arg)
{
    (void)arg;
    void *p = malloc(1234);                 /* m 7 1234 t1 */
    if (p == NULL)
        fail("worker malloc");
    free(p);                                /* f 7 t1 */
    return NULL;
}

int main(void)
{
    char *p1 = malloc(100);                 /* m 0 100 */
    char *p2 = calloc(10, 30);              /* c 1 300 */
    char *p3 = realloc(p1, 5000);           /* r 0 5000 */
    void *p4 = memalign(64, 200);           /* a 2 200 64 */
    void *p5 = NULL;
    if (posix_memalign(&p5, 4096, 10) != 0) /* a 3 10 4096 */
        fail("posix_memalign");
    void *p6 = aligned_alloc(256, 512);     /* a 4 512 256 */
    void *p7 = valloc(33);                  /* a 5 33 4096 */
    if (!p2 || !p3 || !p4 || !p6 || !p7)
        fail("allocation");
    free(p2);                               /* f 1 */
    void *p8 = realloc(NULL, 77);           /* m 6 77 */
    if (realloc(p8, 0) != NULL)             /* f 6 */
        fail("realloc(p, 0)");
    free(NULL);                             /* nothing */

    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0 || pthread_join(thread, NULL) != 0)
        fail("thread");

    void *big = malloc(200000);             /* m 8 200000: mmapped */
    free(big);                              /* f 8 */

    pid_t child = fork();
    if (child < 0)
        fail("fork");
    if (child == 0) {
        /* Allocations the parent's trace must not contain; exit runs the destructors. */
        for (int i = 0; i < 1000; i++)
            free(malloc(999));
        exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail("child");

    void *p11 = malloc(42);                 /* m 9 42 */
    free(p3);                               /* f 0 */
    free(p4);                               /* f 2 */
    free(p5);                               /* f 3 */
    free(p6);                               /* f 4 */
    free(p7);                               /* f 5 */
    free(p11);                              /* f 9 */
    for (int i = 0; i < 100; i++)           /* m 10+i 24, f 10+i: one address reused */
        free(malloc(24));
    return 0;
}
