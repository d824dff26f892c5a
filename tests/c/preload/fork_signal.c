/* fork_signal.c - fork() from a signal handler that interrupted malloc or free.
 * A POSIX timer (timer_create, SIGEV_SIGNAL, SIGUSR1) fires RATE times a second; its
 * handler calls fork(). The child, still inside the handler, verifies and frees a block
 * allocated before the run, then mallocs, writes, verifies, reallocs, callocs and frees
 * several sizes (up to 300 KiB, above the mmap threshold) and _exit(0)s; that malloc in
 * the child is exactly what is tested. The parent's handler only records the pid
 * (async-signal-safe work only). Meanwhile the single main thread loops in malloc /
 * free / realloc for SECONDS, mostly inside the allocator, so the signal often lands in
 * the middle of an allocator call (the count is reported), and reaps children with
 * waitpid(WNOHANG). A child that does not exit within CHILD_TIMEOUT is killed and counted
 * as hung; the SIGALRM watchdog (distinct from the timer's SIGUSR1) fails the run if the
 * parent stops making progress, e.g. a fork() that deadlocks on an allocator lock held
 * by the code the signal interrupted. Either way the run ends with a failure, not a hang.
 *
 * The process stays single-threaded on purpose: glibc skips its malloc locks in a
 * single-threaded process (and so cannot self-deadlock in fork), while allocators that
 * always lock in their atfork handlers (jemalloc, tcmalloc) can.
 *
 * usage: fork_signal SECONDS RATE_HZ [CHILD_TIMEOUT_SECONDS] [SEED]
 * prints one line "fork_signal ok: ..." (or "fork_signal FAILED: ...") with the counts,
 * names the first failures on stderr, and exits 0 (all children succeeded), 1 (some
 * child exited nonzero or was killed by a signal, none hung), 4 (some child hung) or 3
 * (the watchdog fired: the parent deadlocked). */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "common.h"

#define SLOTS 64
#define MAX_FORKS 200000
#define MAX_OUTSTANDING 64      /* children alive at once; the handler skips a fork beyond */

struct block {
    unsigned char *p;
    size_t size;
    uint64_t id;
};

/* Shared between the handler and the main loop. Only the handler writes pids[] (at
 * index forks_done, then bumps forks_done); only the main loop clears an entry (a
 * reaped child) and bumps reaped. Same thread, so volatile sig_atomic_t is enough. */
static volatile sig_atomic_t pids[MAX_FORKS];
static volatile sig_atomic_t forks_done, fork_errors, forks_skipped, reaped;
static volatile sig_atomic_t in_allocator, landed_inside, timer_armed;
static struct block witness;    /* allocated before the timer starts, never touched after */

/* ---- the child ------------------------------------------------------------------------ */

/* Mark the first and last 16 bytes of a block (full patterns would keep the main loop
 * out of malloc; the child verifies full patterns of its own blocks). */
static void mark(struct block *b)
{
    size_t head = b->size < 16 ? b->size : 16;
    pattern_fill(b->p, 0, head, b->id);
    pattern_fill(b->p, b->size - head, b->size, b->id);
}

static bool marked(const struct block *b)
{
    size_t head = b->size < 16 ? b->size : 16;
    return pattern_check(b->p, 0, head, b->id) < 0 &&
           pattern_check(b->p, b->size - head, b->size, b->id) < 0;
}

static __attribute__((noreturn)) void child_in_handler(void)
{
    kill_children_hook = NULL;
    prog_name = "fork_signal(child)";
    REQUIRE_PATTERN(witness.p, witness.size, witness.id, "child: block from before the run");
    free(witness.p);
    static const size_t sizes[] = { 16, 200, 3000, 70000, 300000 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = opaque(malloc(sizes[i]));
        REQUIRE(p[i] != NULL, "child: malloc(%zu) returned NULL", sizes[i]);
        pattern_fill(p[i], 0, sizes[i], 0xc41d0000u + (unsigned)i);
    }
    unsigned char *q = opaque(realloc(p[1], 100000));
    REQUIRE(q != NULL, "child: realloc(200 -> 100000) returned NULL");
    REQUIRE_PATTERN(q, 200, 0xc41d0001u, "child: realloc'ed block");
    p[1] = NULL;
    unsigned char *z = opaque(calloc(100, 30));
    REQUIRE(z != NULL, "child: calloc(100, 30) returned NULL");
    for (int i = 0; i < 3000; i++)
        REQUIRE(z[i] == 0, "child: calloc byte %d is %#x", i, z[i]);
    for (int i = 0; i < N; i++)
        if (p[i] != NULL) {
            REQUIRE_PATTERN(p[i], sizes[i], 0xc41d0000u + (unsigned)i, "child");
            free(p[i]);
        }
    free(q);
    free(z);
    _exit(0);
}

/* ---- the parent's handler: async-signal-safe only ------------------------------------- */

static void on_timer(int sig)
{
    (void)sig;
    int saved = errno;
    if (!timer_armed || forks_done >= MAX_FORKS) {
        errno = saved;
        return;
    }
    if (forks_done - reaped >= MAX_OUTSTANDING) {
        forks_skipped++;
        errno = saved;
        return;
    }
    if (in_allocator)
        landed_inside++;
    pid_t pid = fork();
    if (pid == 0)
        child_in_handler();
    if (pid > 0) {
        pids[forks_done] = pid;
        forks_done++;
    } else {
        fork_errors++;
    }
    errno = saved;
}

static void kill_children(void)      /* kill_children_hook: async-signal-safe */
{
    for (sig_atomic_t i = 0; i < forks_done; i++)
        if (pids[i] > 0)
            kill(pids[i], SIGKILL);
}

/* ---- the main loop ---------------------------------------------------------------------- */

static unsigned succeeded, failed, hung;   /* failed: nonzero exit or killed; hung: timed out */
static sig_atomic_t oldest;     /* pids[] below this are all reaped */
static char report[4096];
static size_t report_len;
static double last_reap;

/* Describe one of the first ten failures in report. */
static void note_failure(pid_t pid, const char *what, int value)
{
    if (failed + hung <= 10)
        report_len += (size_t)snprintf(report + report_len, sizeof report - report_len,
                                       "%schild pid %d %s %d", report_len ? "; " : "",
                                       (int)pid, what, value);
}

static void forget(pid_t pid)
{
    for (sig_atomic_t i = oldest; i < forks_done; i++)
        if (pids[i] == pid) {
            pids[i] = 0;
            break;
        }
    while (oldest < forks_done && pids[oldest] == 0)
        oldest++;
    reaped++;
}

static void reap(void)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        forget(pid);
        last_reap = now_seconds();
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            succeeded++;
            continue;
        }
        failed++;
        if (WIFEXITED(status))
            note_failure(pid, "exited with status", WEXITSTATUS(status));
        else
            note_failure(pid, "was killed by signal", WTERMSIG(status));
    }
}

/* Kill and count every child still alive: they had their time. */
static void give_up_on_children(unsigned timeout)
{
    for (sig_atomic_t i = oldest; i < forks_done; i++) {
        pid_t pid = pids[i];
        if (pid <= 0)
            continue;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        forget(pid);
        hung++;
        note_failure(pid, "hung (deadlock?) and was killed after seconds:", (int)timeout);
    }
}

/* Sizes: 50% up to 512 B, 35% to 16 KiB (past tcache, into the bins), 10% to 100 KiB,
 * 5% 128-512 KiB (mmap and munmap). */
static size_t loop_size(uint64_t *rng)
{
    unsigned r = (unsigned)(rng_next(rng) % 100);
    if (r < 50)
        return rng_range(rng, 1, 512);
    if (r < 85)
        return rng_range(rng, 513, 16 * 1024);
    if (r < 95)
        return rng_range(rng, 16 * 1024 + 1, 100 * 1024);
    return rng_range(rng, 128 * 1024 + 1, 512 * 1024);
}

int main(int argc, char **argv)
{
    prog_name = "fork_signal";
    if (argc < 3) {
        fprintf(stderr, "usage: fork_signal SECONDS RATE_HZ [CHILD_TIMEOUT_SECONDS] [SEED]\n");
        return 2;
    }
    unsigned seconds = (unsigned)arg_ulong(argc, argv, 1, 3, 1, 3600, "SECONDS");
    unsigned rate = (unsigned)arg_ulong(argc, argv, 2, 2000, 1, 100000, "RATE_HZ");
    unsigned timeout = (unsigned)arg_ulong(argc, argv, 3, 10, 1, 3600, "CHILD_TIMEOUT_SECONDS");
    uint64_t rng = arg_ulong(argc, argv, 4, 1, 0, ~0UL, "SEED");
    (void)min_alignment(1);     /* reads PRELOAD_TEST_C_ALIGNMENT before any thread */
    kill_children_hook = kill_children;
    watchdog_start(timeout + 5, seconds + timeout + 60);

    witness.size = 5000;
    witness.id = 0x717e55;
    witness.p = opaque(malloc(witness.size));
    REQUIRE(witness.p != NULL);
    pattern_fill(witness.p, 0, witness.size, witness.id);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_timer;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    REQUIRE(sigaction(SIGUSR1, &sa, NULL) == 0);
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    timer_t timer;
    REQUIRE(timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0, "timer_create: %s", strerror(errno));
    long period_ns = 1000000000L / (long)rate;
    struct itimerspec its = { { period_ns / 1000000000L, period_ns % 1000000000L },
                              { period_ns / 1000000000L, period_ns % 1000000000L } };

    struct block slots[SLOTS] = { { 0 } };
    uint64_t next_id = 1;
    unsigned long ops = 0;
    double t0 = now_seconds(), end = t0 + seconds;
    last_reap = t0;
    timer_armed = 1;
    REQUIRE(timer_settime(timer, 0, &its, NULL) == 0, "timer_settime: %s", strerror(errno));
    watchdog_set_phase("main loop (malloc/free/realloc while the timer forks)");
    while (now_seconds() < end) {
        for (int k = 0; k < 64; k++) {
            struct block *b = &slots[rng_next(&rng) % SLOTS];
            unsigned r = (unsigned)(rng_next(&rng) % 100);
            if (b->p != NULL)
                REQUIRE(marked(b), "main loop: block %p of %zu bytes lost its marks",
                        (void *)b->p, b->size);
            if (r < 55 || b->p == NULL) {
                size_t size = loop_size(&rng);
                in_allocator = 1;
                free(b->p);
                void *p = malloc(size);
                in_allocator = 0;
                REQUIRE(p != NULL, "malloc(%zu) returned NULL", size);
                *b = (struct block){ opaque(p), size, next_id++ };
                mark(b);
            } else if (r < 80) {
                size_t size = loop_size(&rng);
                in_allocator = 1;
                void *p = realloc(b->p, size);
                in_allocator = 0;
                REQUIRE(p != NULL, "realloc(%zu -> %zu) returned NULL", b->size, size);
                size_t keep = b->size < size ? b->size : size, head = keep < 16 ? keep : 16;
                REQUIRE(pattern_check(opaque(p), 0, head, b->id) < 0, "realloc lost the prefix");
                *b = (struct block){ opaque(p), size, b->id };
                mark(b);
            } else {
                in_allocator = 1;
                free(b->p);
                in_allocator = 0;
                b->p = NULL;
            }
            ops++;
        }
        reap();
        watchdog_bump();
        /* Children that never finish fill MAX_OUTSTANDING: say so now, not at the end. */
        if (forks_done - reaped >= MAX_OUTSTANDING && now_seconds() - last_reap > timeout)
            give_up_on_children(timeout);
    }

    watchdog_set_phase("stopping the timer");
    timer_armed = 0;
    REQUIRE(timer_delete(timer) == 0);
    watchdog_set_phase("waiting for the last children");
    double deadline = now_seconds() + timeout;
    while (reaped < forks_done && now_seconds() < deadline) {
        reap();
        watchdog_bump();
        sleep_us(1000);
    }
    give_up_on_children(timeout);
    for (int s = 0; s < SLOTS; s++)
        free(slots[s].p);
    REQUIRE_PATTERN(witness.p, witness.size, witness.id, "parent: block from before the run");
    free(witness.p);
    watchdog_stop();

    double elapsed = now_seconds() - t0;
    if (failed > 0 || hung > 0 || forks_done == 0) {
        fprintf(stderr, "FAIL fork_signal: %d forks, %u children failed, %u hung%s%s%s\n",
                (int)forks_done, failed, hung, forks_done == 0 ? ", no fork happened" : "",
                report_len ? ": " : "", report);
        printf("fork_signal FAILED: forks=%d children-ok=%u failed=%u hung=%u "
               "signals-inside-malloc/free=%d rate=%uHz time=%.2fs allocator=%s\n",
               (int)forks_done, succeeded, failed, hung, (int)landed_inside, rate, elapsed,
               allocator_object());
        return hung > 0 ? 4 : 1;
    }
    printf("fork_signal ok: forks=%d children-ok=%u failed=0 hung=0 signals-inside-malloc/free=%d "
           "skipped=%d fork-errors=%d loop-ops=%lu rate=%uHz time=%.2fs allocator=%s\n",
           (int)forks_done, succeeded, (int)landed_inside, (int)forks_skipped,
           (int)fork_errors, ops, rate, elapsed, allocator_object());
    return 0;
}
