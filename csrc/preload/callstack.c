/* callstack.c - capturing, sampling and numbering call stacks for the recorder; see
 * callstack.h for why libunwind and what each function promises.
 *
 * The stack table is open addressing over 64-bit hashes of the frames: a stack is known
 * by its hash alone (two distinct stacks sharing a 64-bit hash among a million has a
 * probability near 3e-8, and would only merge two call sites). It lives in one mmap of
 * PRMI_STACK_SLOTS slots, touched page by page as stacks arrive; past three quarters
 * full, new stacks are no longer numbered and their operations carry none. */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "callstack.h"

#ifdef PRM_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

#define PRMI_STACK_SLOTS (1u << 20)         /* 16 MiB of address space, 786,432 stacks */

typedef struct stack_slot {
    uint64_t hash;                          /* 0: empty */
    uint32_t id;
    uint32_t unused;
} stack_slot;

static struct {
    stack_slot *slots;
    uint32_t count;
} table;

static __thread int capturing;              /* this thread is inside unw_backtrace */
static __thread int64_t sample_countdown;   /* bytes until this thread's next sample */
static __thread uint64_t sample_random;     /* xorshift64* state; 0 until first use */

int prmi_stack_available(void)
{
#ifdef PRM_HAVE_LIBUNWIND
    return 1;
#else
    return 0;
#endif
}

/* ---- sampling ------------------------------------------------------------------------- */

static uint64_t next_random(void)
{
    uint64_t x = sample_random;
    if (prm_unlikely(x == 0))
        x = ((uint64_t)prm_os_gettid() << 32) ^ prm_os_monotonic_ns() ^ 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    sample_random = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* An exponential interval of mean `mean`: -ln(u) * mean for u uniform in (0, 1]. */
static int64_t next_interval(uint64_t mean)
{
    double u = (double)((next_random() >> 11) + 1) * (1.0 / 9007199254740992.0);
    double bytes = -log(u) * (double)mean;
    return bytes < 1.0 ? 1 : bytes > 4e18 ? (int64_t)4e18 : (int64_t)bytes;
}

int prmi_stack_sampled(size_t size, uint64_t mean)
{
    if (prm_unlikely(sample_random == 0))
        sample_countdown = next_interval(mean);
    sample_countdown -= (int64_t)(size < (size_t)INT64_MAX ? size : (size_t)INT64_MAX);
    if (prm_likely(sample_countdown > 0))
        return 0;
    /* Several intervals may end inside one large block: it is still one sample, and
     * the countdown starts afresh after it (the probability stays 1 - exp(-s/mean)). */
    sample_countdown = next_interval(mean);
    return 1;
}

/* ---- capture -------------------------------------------------------------------------- */

int prmi_stack_capture(uintptr_t *frames)
{
#ifdef PRM_HAVE_LIBUNWIND
    if (capturing)          /* a signal handler's allocation, or libunwind's own */
        return 0;
    capturing = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    int depth = unw_backtrace((void **)frames, PRMI_STACK_DEPTH);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    capturing = 0;
    return depth > 0 ? depth : 0;
#else
    (void)frames;
    return 0;
#endif
}

/* ---- the table ------------------------------------------------------------------------ */

int prmi_stack_table_setup(void)
{
    if (table.slots != NULL)
        return 0;
    table.slots = prm_os_mmap(PRMI_STACK_SLOTS * sizeof(stack_slot));
    return table.slots != NULL ? 0 : -1;
}

/* Two lanes (even and odd frames) so the multiplications overlap; each step rotates so
 * that high bits reach the low ones the table indexes by. */
static uint64_t stack_hash(const uintptr_t *frames, int depth)
{
    uint64_t a = 0x84222325cbf29ce4ull ^ (uint64_t)depth, b = 0x9e3779b97f4a7c15ull;
    int i = 0;
    for (; i + 1 < depth; i += 2) {
        a = (a ^ frames[i]) * 0x9e3779b97f4a7c15ull;
        b = (b ^ frames[i + 1]) * 0xc2b2ae3d27d4eb4full;
        a = a << 27 | a >> 37;
        b = b << 31 | b >> 33;
    }
    if (i < depth)
        a = ((a ^ frames[i]) * 0x9e3779b97f4a7c15ull);
    uint64_t h = (a ^ (b << 17 | b >> 47)) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

uint32_t prmi_stack_intern(const uintptr_t *frames, int depth, int *is_new)
{
    *is_new = 0;
    if (table.slots == NULL || depth <= 0)
        return 0;
    uint64_t h = stack_hash(frames, depth);
    uint32_t mask = PRMI_STACK_SLOTS - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        stack_slot *s = &table.slots[i];
        if (s->hash == h)
            return s->id;
        if (s->hash == 0) {
            if (table.count >= PRMI_STACK_SLOTS / 4 * 3)
                return 0;
            s->hash = h;
            s->id = ++table.count;
            *is_new = 1;
            return s->id;
        }
    }
}

void prmi_stack_fork_child(void)
{
    capturing = 0;
}
