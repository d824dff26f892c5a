/* remote64: 64-byte blocks handed from one thread to another (remote frees).
 *
 * T/2 producer/consumer pairs (T even, default 2). Each pair has its own bounded
 * single-producer single-consumer ring of 4096 pointers, lock-free (C11 atomics: the
 * producer publishes its tail with a release store every 32 blocks, the consumer its
 * head likewise, and each side rereads the other's index only when its cached copy says
 * full or empty, publishing its own first, then spins with a pause, yielding the CPU
 * after a while). The producer mallocs 64 bytes, stamps it with its id and pushes it;
 * the consumer verifies it and frees it. Every block is allocated on one thread and
 * freed on another, and the queue costs a few instructions and an eighth of a cache
 * line per block, so what is measured is the allocator's remote-free path: how a block
 * freed by a thread that did not allocate it gets back to the one that will allocate
 * again (a lock, an atomic push, a remote-free list, or nothing, and the memory piles
 * up on the consumer's side).
 *
 * ops = blocks passed, split evenly over the pairs. The checksum is the sum over blocks
 * of a hash of each block's id and contents: it does not depend on the timing. */
#include <sched.h>
#include <stdatomic.h>

#include "workload.h"

#define CAP 4096            /* blocks in a ring at most (a power of two) */
#define SIZE 64             /* bytes per block */
#define BATCH 32            /* each side publishes its index every BATCH blocks */
#define SPINS 256           /* pauses before a waiting side starts yielding the CPU */
#define LINE 64

struct ring {
    _Alignas(LINE) _Atomic size_t tail;     /* written by the producer */
    _Alignas(LINE) _Atomic size_t head;     /* written by the consumer */
    _Alignas(LINE) unsigned char *slot[CAP];
};

static struct ring rings[MAX_THREADS / 2];
static struct opts o;

static inline void wait_a_little(unsigned *spins)
{
    if (++*spins < SPINS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

static uint64_t produce(struct ring *r, unsigned pair, uint64_t items)
{
    size_t tail = 0, published = 0, head = 0;       /* head: the consumer's, as last read */
    for (uint64_t i = 0; i < items; i++) {
        unsigned char *p = xmalloc(SIZE);
        stamp(p, SIZE, ((uint64_t)pair << 40) | i);
        if (tail - head == CAP) {
            atomic_store_explicit(&r->tail, published = tail, memory_order_release);
            for (unsigned spins = 0; tail - head == CAP; wait_a_little(&spins))
                head = atomic_load_explicit(&r->head, memory_order_acquire);
        }
        r->slot[tail++ % CAP] = p;
        if (tail - published == BATCH || i + 1 == items)
            atomic_store_explicit(&r->tail, published = tail, memory_order_release);
    }
    return 0;
}

static uint64_t consume(struct ring *r, uint64_t items)
{
    size_t head = 0, published = 0, tail = 0;       /* tail: the producer's, as last read */
    uint64_t sum = 0;
    for (uint64_t i = 0; i < items; i++) {
        if (head == tail) {
            atomic_store_explicit(&r->head, published = head, memory_order_release);
            for (unsigned spins = 0; head == tail; wait_a_little(&spins))
                tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        }
        unsigned char *p = r->slot[head++ % CAP];
        if (head - published == BATCH)
            atomic_store_explicit(&r->head, published = head, memory_order_release);
        sum += unstamp(p, "remote64");
        free(p);
    }
    return sum;
}

/* Even threads produce, odd ones consume: thread 2k and 2k+1 are pair k. */
static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    unsigned pair = tid / 2;
    uint64_t items = share(o.n, o.threads / 2, pair);
    return tid % 2 == 0 ? produce(&rings[pair], pair, items) : consume(&rings[pair], items);
}

int main(int argc, char **argv)
{
    static const char about[] = "64-byte blocks from producers to consumers through "
                                "lock-free rings (T even: T/2 pairs)";
    o = parse_args(argc, argv, about, 10000000, 2, 2, MAX_THREADS);
    if (o.threads % 2 != 0)
        usage(argv[0], about, 2, MAX_THREADS, 10000000, 2);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
