/* fork_nested.c - fork() inside fork(): a signal handler forks while the interrupted code
 * of the same thread is itself in the middle of fork(), between the atfork prepare and
 * parent (or child) handlers, with the allocator's fork locks held.
 *
 * Two modes, single-threaded both (glibc's own fork takes no lock of its own then, so
 * only the allocator can deadlock):
 *
 *   fork_nested timer [ITERATIONS] [INTERVAL_US] [CHILD_TIMEOUT] [CHILD_MALLOC]
 *     glibc's tst-mallocfork2, rebuilt: an interval timer (SIGUSR1 every INTERVAL_US,
 *     default 200; one shot, armed again when the handler is done, so that the main
 *     loop is not starved) whose handler forks (the child _exits, the parent waits); the main
 *     loop forks every fourth iteration and otherwise frees and mallocs a block of 16 B
 *     to 60 KiB, ITERATIONS times (default 4000). The timer often fires while the main
 *     loop is inside fork, so the handler's fork nests in it (counted: nested=N).
 *
 *   fork_nested depth N [ROUNDS]
 *     Every nesting depth from 1 to N, deterministically. This program registers its own
 *     atfork handlers before the preloaded allocator registers its (a preinit_array
 *     function runs before any library's constructor), so its prepare handler runs after
 *     the allocator's prepare has taken its locks, and its parent and child handlers run
 *     before the allocator's. From each of the three it raises SIGUSR1 (SA_NODEFER),
 *     whose handler forks again, until the fork depth is N. Every child at every depth
 *     mallocs, writes, verifies and frees several sizes (inherited heap usable) and
 *     _exits; afterwards the main thread allocates, and so does a new thread (whose
 *     allocations take the locks the real way: none may be left held).
 *
 * A SIGALRM watchdog turns a hang into exit 3 naming the phase; exit 1 means some child
 * failed. Prints "fork_nested ok: ..." with the counts. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "common.h"

#define MAX_DEPTH 8

static volatile sig_atomic_t depth;                 /* forks in progress in this thread */
static volatile sig_atomic_t target_depth;          /* depth mode: how deep to nest */
static volatile sig_atomic_t nest_from;             /* depth mode: which atfork handler raises */
static volatile sig_atomic_t forks_at[MAX_DEPTH + 1];
static volatile sig_atomic_t children_failed, nested;
static unsigned child_timeout = 10;
static int child_allocates = 1;                     /* timer mode: CHILD_MALLOC */
static unsigned char *witness;                      /* allocated before, checked by children */
enum { WITNESS_SIZE = 3000, WITNESS_ID = 0x517e };
enum { FROM_NONE, FROM_PREPARE, FROM_PARENT, FROM_CHILD };

/* ---- what each child does: prove the inherited heap works ------------------------------ */

static __attribute__((noreturn)) void child_body(void)
{
    kill_children_hook = NULL;
    if (!child_allocates)
        _exit(0);
    if (pattern_check(witness, 0, WITNESS_SIZE, WITNESS_ID) >= 0)
        _exit(20);
    static const size_t sizes[] = { 16, 400, 6000, 60000, 300000 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = opaque(malloc(sizes[i]));
        if (p[i] == NULL)
            _exit(21);
        pattern_fill(p[i], 0, sizes[i], (uint64_t)i + 77);
    }
    for (int i = 0; i < N; i++) {
        if (pattern_check(p[i], 0, sizes[i], (uint64_t)i + 77) >= 0)
            _exit(22);
        free(p[i]);
    }
    _exit(0);
}

/* Async-signal-safe: wait for one child, killing it past child_timeout (a hang). */
static void wait_child(pid_t pid)
{
    if (pid < 0) {
        children_failed++;
        return;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) {
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                children_failed++;
            return;
        }
        if (got < 0 && errno != EINTR) {
            children_failed++;
            return;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > (time_t)child_timeout) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            children_failed++;
            return;
        }
        struct timespec pause = { 0, 100000 };
        nanosleep(&pause, NULL);
    }
}

/* A fork at the next depth; the child runs child_body, the parent waits for it. */
static void fork_one(void)
{
    int saved = errno;
    depth++;
    if (depth > 1)
        nested++;
    if (depth <= MAX_DEPTH)
        forks_at[depth]++;
    pid_t pid = fork();
    if (pid == 0)
        child_body();
    wait_child(pid);
    depth--;
    errno = saved;
}

static timer_t timer;
static struct itimerspec rearm;     /* timer mode: one shot, armed again after each fork */

static void on_signal(int sig)
{
    (void)sig;
    fork_one();
    /* A periodic timer would fire again before the handler's fork and wait are over and
     * starve the main loop; the next shot is INTERVAL_US after this one ends instead. */
    if (rearm.it_value.tv_nsec != 0)
        timer_settime(timer, 0, &rearm, NULL);
}

/* ---- depth mode: atfork handlers registered before the allocator's --------------------- */

static void maybe_nest(int from)
{
    if (nest_from == from && depth < target_depth)
        raise(SIGUSR1);
}

static void at_prepare(void) { maybe_nest(FROM_PREPARE); }
static void at_parent(void) { maybe_nest(FROM_PARENT); }
static void at_child(void) { maybe_nest(FROM_CHILD); }

/* Runs before any shared object's constructor (the preloaded allocator's included), so
 * these handlers are registered first: prepare handlers run in reverse order of
 * registration, parent and child handlers in order. */
static void register_early(int argc, char **argv, char **envp)
{
    (void)argc, (void)argv, (void)envp;
    pthread_atfork(at_prepare, at_parent, at_child);
}
__attribute__((section(".preinit_array"), used))
static void (*const register_early_entry)(int, char **, char **) = register_early;

static void *thread_allocates(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = malloc((size_t)(16 + i * 37));
        REQUIRE(p != NULL);
        memset(p, 1, 16);
        free(p);
    }
    return NULL;
}

static void install_handler(int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = flags;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
}

static int run_depth(int argc, char **argv)
{
    unsigned max = (unsigned)arg_ulong(argc, argv, 2, 3, 1, MAX_DEPTH - 1, "N");
    unsigned rounds = (unsigned)arg_ulong(argc, argv, 3, 3, 1, 1000, "ROUNDS");
    install_handler(SA_RESTART | SA_NODEFER);
    static const char *const where[] = { "", "prepare", "parent", "child" };
    for (unsigned round = 0; round < rounds; round++)
        for (int from = FROM_PREPARE; from <= FROM_CHILD; from++)
            for (unsigned n = 1; n <= max; n++) {
                watchdog_set_phase(where[from]);
                target_depth = (sig_atomic_t)n;
                nest_from = from;
                fork_one();
                nest_from = FROM_NONE;
                /* The locks every level took are free again: allocate here... */
                void *p = malloc(100000);
                REQUIRE(p != NULL);
                memset(p, 7, 100000);
                free(p);
                watchdog_bump();
            }
    /* ...and from a second thread, whose allocations really contend for them. */
    watchdog_set_phase("a new thread allocates after the nested forks");
    pthread_t thread;
    REQUIRE(pthread_create(&thread, NULL, thread_allocates, NULL) == 0);
    thread_allocates(NULL);
    pthread_join(thread, NULL);
    watchdog_stop();

    bool every_depth = true;
    char depths[128] = "";
    size_t used = 0;
    for (unsigned d = 1; d <= max; d++) {
        /* From prepare and parent the forks at depth d: rounds x (max - d + 1) each. */
        every_depth &= forks_at[d] > 0;
        used += (size_t)snprintf(depths + used, sizeof depths - used, "%sdepth%u=%d",
                                 d > 1 ? " " : "", d, (int)forks_at[d]);
    }
    bool ok = every_depth && children_failed == 0;
    printf("fork_nested %s: mode=depth max-depth=%u %s nested=%d children-failed=%d "
           "allocator=%s\n", ok ? "ok" : "FAILED", max, depths, (int)nested,
           (int)children_failed, allocator_object());
    return ok ? 0 : 1;
}

/* ---- timer mode: glibc's tst-mallocfork2 ------------------------------------------------- */

static int run_timer(int argc, char **argv)
{
    unsigned iterations = (unsigned)arg_ulong(argc, argv, 2, 4000, 1, 10000000, "ITERATIONS");
    unsigned interval_us = (unsigned)arg_ulong(argc, argv, 3, 200, 10, 1000000, "INTERVAL_US");
    child_timeout = (unsigned)arg_ulong(argc, argv, 4, 10, 1, 3600, "CHILD_TIMEOUT");
    child_allocates = (int)arg_ulong(argc, argv, 5, 0, 0, 1, "CHILD_MALLOC");
    install_handler(SA_RESTART);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    REQUIRE(timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0, "timer_create: %s", strerror(errno));
    rearm.it_value.tv_sec = interval_us / 1000000;
    rearm.it_value.tv_nsec = (long)(interval_us % 1000000) * 1000 + 1;

    enum { SLOTS = 100 };
    void *slots[SLOTS] = { 0 };
    uint64_t rng = 1;
    watchdog_set_phase("main loop: malloc/free and fork, while the timer forks");
    REQUIRE(timer_settime(timer, 0, &rearm, NULL) == 0, "timer_settime: %s", strerror(errno));
    for (unsigned i = 0; i < iterations; i++) {
        if (i % 4 == 0) {
            fork_one();
        } else {
            unsigned slot = (unsigned)(rng_next(&rng) % SLOTS);
            free(slots[slot]);
            size_t size = rng_range(&rng, 16, 60 * 1024);
            slots[slot] = malloc(size);
            REQUIRE(slots[slot] != NULL, "malloc(%zu) returned NULL", size);
            memset(slots[slot], 0x33, size < 256 ? size : 256);
        }
        watchdog_bump();
    }
    memset(&rearm, 0, sizeof rearm);
    struct itimerspec off = { { 0, 0 }, { 0, 0 } };
    REQUIRE(timer_settime(timer, 0, &off, NULL) == 0);
    REQUIRE(timer_delete(timer) == 0);
    for (int i = 0; i < SLOTS; i++)
        free(slots[i]);
    watchdog_stop();
    bool ok = children_failed == 0;
    printf("fork_nested %s: mode=timer iterations=%u forks=%d nested=%d children-failed=%d "
           "allocator=%s\n", ok ? "ok" : "FAILED", iterations, (int)(forks_at[1] + forks_at[2]),
           (int)nested, (int)children_failed, allocator_object());
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    prog_name = "fork_nested";
    if (argc < 2 || (strcmp(argv[1], "timer") != 0 && strcmp(argv[1], "depth") != 0)) {
        fprintf(stderr, "usage: fork_nested timer [ITERATIONS] [INTERVAL_US] [CHILD_TIMEOUT] [CHILD_MALLOC]\n"
                        "       fork_nested depth [N] [ROUNDS]\n");
        return 2;
    }
    witness = opaque(malloc(WITNESS_SIZE));
    REQUIRE(witness != NULL);
    pattern_fill(witness, 0, WITNESS_SIZE, WITNESS_ID);
    watchdog_start(child_timeout + 5, 600);
    int rc = strcmp(argv[1], "timer") == 0 ? run_timer(argc, argv) : run_depth(argc, argv);
    free(witness);
    return rc;
}
