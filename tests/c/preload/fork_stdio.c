/* fork_stdio.c - fork() while other threads are inside stdio (glibc's
 * tst-malloc-fork-deadlock, rebuilt).
 *
 * FORKERS threads call fork() in a loop (the child _exits at once, or with CHILD_MALLOC
 * first mallocs, writes and frees, proving it inherited a usable heap); READERS threads
 * loop over fopen("/proc/self/maps") / getline / fclose, so stdio allocates and frees its
 * buffers under its FILE locks; one thread loops over fflush(NULL), which holds stdio's
 * list lock while it takes every FILE lock in turn; MALLOCERS threads malloc and free
 * sizes from 16 B to 200 KiB. For SECONDS.
 *
 * The cycle this catches: the forking thread holds every allocator lock (an atfork
 * prepare handler) and waits in glibc's fork for stdio's list lock; the fflush(NULL)
 * thread holds the list lock and waits for a FILE lock; that FILE lock's holder is in
 * malloc waiting for an allocator lock. A correct allocator orders its locks after the
 * list lock (csrc/core/threads.c). The SIGALRM watchdog turns a hang into exit 3 naming the
 * phase; a child that does not exit within CHILD_TIMEOUT counts as hung.
 *
 * usage: fork_stdio SECONDS [FORKERS] [READERS] [MALLOCERS] [CHILD_MALLOC] [CHILD_TIMEOUT]
 * prints "fork_stdio ok: forks=N maps-reads=N flushes=N ..." and exits 0; exits 1 when a
 * child failed, 3 when the watchdog fired. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>

#include "common.h"

static atomic_bool stop;
static atomic_ulong forks, children_failed, maps_reads, maps_lines, flushes, mallocs;
static int child_mallocs;
static unsigned child_timeout;

/* The child: _exit at once, or first use the heap it inherited. */
static __attribute__((noreturn)) void child(void)
{
    if (child_mallocs) {
        static const size_t sizes[] = { 24, 700, 5000, 300000 };
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unsigned char *p = opaque(malloc(sizes[i]));
            if (p == NULL)
                _exit(10);
            pattern_fill(p, 0, sizes[i], i);
            if (pattern_check(p, 0, sizes[i], i) >= 0)
                _exit(11);
            free(p);
        }
    }
    _exit(0);
}

/* Wait for a child, killing it after child_timeout seconds (a hung child). */
static bool reap(pid_t pid)
{
    double deadline = now_seconds() + child_timeout;
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (got < 0 && errno != EINTR)
            return false;
        if (now_seconds() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            return false;
        }
        sleep_us(200);
    }
}

static void *forker(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        pid_t pid = fork();
        if (pid == 0)
            child();
        REQUIRE(pid > 0, "fork: %s", strerror(errno));
        if (!reap(pid))
            atomic_fetch_add(&children_failed, 1);
        atomic_fetch_add(&forks, 1);
        watchdog_bump();
    }
    return NULL;
}

static void *maps_reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        FILE *f = fopen("/proc/self/maps", "r");
        REQUIRE(f != NULL, "fopen(/proc/self/maps): %s", strerror(errno));
        char *line = NULL;
        size_t capacity = 0;
        unsigned long lines = 0;
        while (getline(&line, &capacity, f) > 0)
            lines++;
        free(line);
        fclose(f);
        REQUIRE(lines > 0, "/proc/self/maps read as empty");
        atomic_fetch_add(&maps_reads, 1);
        atomic_fetch_add(&maps_lines, lines);
        watchdog_bump();
    }
    return NULL;
}

static void *flusher(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        fflush(NULL);
        atomic_fetch_add(&flushes, 1);
    }
    return NULL;
}

static void *mallocer(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg;
    void *held[16] = { 0 };
    while (!atomic_load(&stop)) {
        unsigned slot = (unsigned)(rng_next(&rng) % 16);
        free(held[slot]);
        size_t size = rng_next(&rng) % 8 == 0 ? rng_range(&rng, 16384, 200 * 1024)
                                               : rng_range(&rng, 16, 4096);
        held[slot] = malloc(size);
        REQUIRE(held[slot] != NULL, "malloc(%zu) returned NULL", size);
        memset(held[slot], 0x5a, size < 64 ? size : 64);
        atomic_fetch_add(&mallocs, 1);
    }
    for (int i = 0; i < 16; i++)
        free(held[i]);
    return NULL;
}

static void start(pthread_t *thread, void *(*body)(void *), void *arg)
{
    int rc = pthread_create(thread, NULL, body, arg);
    REQUIRE(rc == 0, "pthread_create: %s", strerror(rc));
}

int main(int argc, char **argv)
{
    prog_name = "fork_stdio";
    unsigned seconds = (unsigned)arg_ulong(argc, argv, 1, 3, 1, 3600, "SECONDS");
    unsigned forkers = (unsigned)arg_ulong(argc, argv, 2, 2, 1, 64, "FORKERS");
    unsigned readers = (unsigned)arg_ulong(argc, argv, 3, 4, 0, 64, "READERS");
    unsigned mallocers = (unsigned)arg_ulong(argc, argv, 4, 0, 0, 64, "MALLOCERS");
    child_mallocs = (int)arg_ulong(argc, argv, 5, 0, 0, 1, "CHILD_MALLOC");
    child_timeout = (unsigned)arg_ulong(argc, argv, 6, 10, 1, 3600, "CHILD_TIMEOUT");
    watchdog_start(child_timeout + 5, seconds + child_timeout + 60);
    watchdog_set_phase("forking while threads read /proc/self/maps and flush stdio");

    enum { MAX_THREADS = 64 * 3 + 1 };
    pthread_t threads[MAX_THREADS];
    unsigned n = 0;
    for (unsigned i = 0; i < readers; i++)
        start(&threads[n++], maps_reader, NULL);
    start(&threads[n++], flusher, NULL);
    for (unsigned i = 0; i < mallocers; i++)
        start(&threads[n++], mallocer, (void *)(uintptr_t)(i + 1));
    for (unsigned i = 0; i < forkers; i++)
        start(&threads[n++], forker, NULL);

    double t0 = now_seconds();
    while (now_seconds() < t0 + seconds)
        sleep_us(10000);
    atomic_store(&stop, true);
    watchdog_set_phase("joining the threads");
    for (unsigned i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
    watchdog_stop();

    unsigned long failed = atomic_load(&children_failed);
    printf("fork_stdio %s: forks=%lu children-failed=%lu maps-reads=%lu maps-lines=%lu "
           "flushes=%lu mallocs=%lu time=%.2fs allocator=%s\n",
           failed == 0 && atomic_load(&forks) > 0 ? "ok" : "FAILED", atomic_load(&forks), failed,
           atomic_load(&maps_reads), atomic_load(&maps_lines), atomic_load(&flushes),
           atomic_load(&mallocs), now_seconds() - t0, allocator_object());
    return failed == 0 && atomic_load(&forks) > 0 ? 0 : 1;
}
