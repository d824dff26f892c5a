/* live_churn.c - a program that keeps allocating while the live view reads it
 * (tests/test_live.py): argv[1] threads each replace random slots of their own table of
 * blocks with new blocks of random sizes (16 bytes to 192 KiB, so the bins, the top,
 * the thread caches and the mmapped chunks all change) and sometimes hand a block to
 * the next thread's table, so frees cross arenas. It prints "ready" once every thread
 * runs and stops when a line arrives on stdin. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 128
#define MAX_THREADS 16

static atomic_int stop, started;
static _Atomic(void *) tables[MAX_THREADS][SLOTS];
static int thread_count;

static uint64_t next_random(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void *churn(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t state = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
    atomic_fetch_add(&started, 1);
    while (!atomic_load(&stop)) {
        uint64_t r = next_random(&state);
        int table = (r >> 40) % 8 == 0 ? (me + 1) % thread_count : me;
        size_t size = (r >> 20) % 64 == 0 ? 140000 + r % 60000 : 16 + r % 4000;
        void *block = malloc(size);
        if (block == NULL)
            return (void *)1;
        memset(block, me, size < 64 ? size : 64);
        void *old = atomic_exchange(&tables[table][r % SLOTS], block);
        free(old);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    thread_count = argc > 1 ? atoi(argv[1]) : 4;
    if (thread_count < 1 || thread_count > MAX_THREADS)
        return 2;
    pthread_t threads[MAX_THREADS];
    for (int i = 0; i < thread_count; i++)
        if (pthread_create(&threads[i], NULL, churn, (void *)(intptr_t)i) != 0)
            return 3;
    while (atomic_load(&started) < thread_count)
        usleep(1000);
    static const char ready[] = "ready\n";
    if (write(1, ready, sizeof ready - 1) != (ssize_t)(sizeof ready - 1))
        return 4;
    char c;
    while (read(0, &c, 1) == 1 && c != '\n')
        ;
    atomic_store(&stop, 1);
    int failed = 0;
    for (int i = 0; i < thread_count; i++) {
        void *result;
        pthread_join(threads[i], &result);
        failed |= result != NULL;
    }
    return failed ? 5 : 0;
}
