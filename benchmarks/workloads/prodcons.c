/* prodcons: producer/consumer hand-off.
 *
 * ceil(T/2) producer threads allocate blocks (90% 16-512 B, 10% 513 B-4 KiB), stamp
 * them and push them, in batches of 32, through one bounded queue (4096 blocks, mutex
 * and condition variables, with hysteresis so threads rarely sleep) to floor(T/2) consumer threads, which verify and free them.
 * Every block is allocated on one thread and freed on another, always in the same
 * direction: this measures the cost of remote frees and whether memory freed by the
 * consumers finds its way back to the producers (or piles up in consumer-side caches).
 *
 * ops = blocks passed. The checksum is the sum over blocks of a hash of each block's
 * id and contents, so it does not depend on which consumer got which block. */
#include "workload.h"

#define CAP 4096    /* blocks in the queue at most */
#define LOW 1024    /* an empty queue wakes consumers once it holds this many */
#define BATCH 32

static struct {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    unsigned char *buf[CAP];
    size_t head, count;
    unsigned producers_left;
} q = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .not_empty = PTHREAD_COND_INITIALIZER,
       .not_full = PTHREAD_COND_INITIALIZER};

static struct opts o;
static unsigned producers;

static void push(unsigned char **items, size_t k)
{
    pthread_mutex_lock(&q.mu);
    if (CAP - q.count < k)              /* full: sleep until consumers drained half */
        while (q.count > CAP / 2)
            pthread_cond_wait(&q.not_full, &q.mu);
    for (size_t i = 0; i < k; i++)
        q.buf[(q.head + q.count + i) % CAP] = items[i];
    q.count += k;
    if (q.count >= LOW)
        pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
}

/* Up to BATCH items; 0 once the producers are done and the queue is empty. */
static size_t pop(unsigned char **items)
{
    size_t k = 0;
    pthread_mutex_lock(&q.mu);
    if (q.count == 0)                   /* empty: sleep until producers refilled a bit */
        while (q.count < LOW && q.producers_left > 0)
            pthread_cond_wait(&q.not_empty, &q.mu);
    while (k < BATCH && q.count > 0) {
        items[k++] = q.buf[q.head];
        q.head = (q.head + 1) % CAP;
        q.count--;
    }
    if (q.count <= CAP / 2)
        pthread_cond_broadcast(&q.not_full);
    pthread_mutex_unlock(&q.mu);
    return k;
}

static uint64_t produce(unsigned tid)
{
    uint64_t rng = rng_seed(o.seed, tid), items = share(o.n, producers, tid);
    unsigned char *batch[BATCH];
    size_t k = 0;
    for (uint64_t i = 0; i < items; i++) {
        size_t size = rng_next(&rng) % 10 < 9 ? rng_range(&rng, 16, 512) : rng_range(&rng, 513, 4096);
        batch[k] = xmalloc(size);
        stamp(batch[k], size, ((uint64_t)tid << 40) | i);
        if (++k == BATCH || i + 1 == items) {
            push(batch, k);
            k = 0;
        }
    }
    pthread_mutex_lock(&q.mu);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.mu);
    return 0;
}

static uint64_t consume(void)
{
    unsigned char *batch[BATCH];
    uint64_t sum = 0;
    size_t k;
    while ((k = pop(batch)) > 0)
        for (size_t i = 0; i < k; i++) {
            sum += unstamp(batch[i], "prodcons");
            free(batch[i]);
        }
    return sum;
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    return tid < producers ? produce(tid) : consume();
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "producers allocate, consumers verify and free (T/2 of each)",
                   2500000, 2, 2, MAX_THREADS);
    producers = (o.threads + 1) / 2;
    q.producers_left = producers;
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
