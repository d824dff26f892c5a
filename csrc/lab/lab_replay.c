/* lab_replay.c - the replay loop: runs a trace of malloc/free/realloc/calloc/memalign
 * operations on one policy, keeping a table of live objects by id, and measures the
 * footprint, the live and usable bytes, the free space, failures, time and faults.
 *
 * The loop is the lab's measuring instrument, so it does as little as it can per op:
 * one table entry per object ({pointer, requested, usable}), counters, and one
 * indirect call into the policy. Everything that walks (the policy's stats) happens
 * only every sample_every ops and its time is taken out of the measured time. With
 * verify on, each block gets an id-derived pattern in its first and last 8 bytes,
 * checked when it is freed or reallocated; calloc'd blocks are checked for zeros. */
#include "lab_internal.h"

struct object {
    char *ptr;                  /* NULL: not live */
    uint64_t size;              /* requested */
    uint64_t usable;
};

static uint64_t pattern_of(uint64_t id)
{
    return (id + 1) * 0x9E3779B97F4A7C15ull;
}

/* The pattern: 8 bytes at the start (fewer for a smaller block), and its complement in
 * the last 8 when the block has 16 or more. */
static void write_pattern(char *p, uint64_t size, uint64_t id)
{
    uint64_t head = pattern_of(id), tail = ~head;
    memcpy(p, &head, size < 8 ? size : 8);
    if (size >= 16)
        memcpy(p + size - 8, &tail, 8);
}

/* 0, or which part broke. `head_bytes` limits the head check (after a realloc only the
 * bytes both sizes share were kept). */
static int check_pattern(const char *p, uint64_t size, uint64_t id, uint64_t head_bytes,
                         int tail)
{
    uint64_t head = pattern_of(id), inverse = ~head;
    if (head_bytes > 8)
        head_bytes = 8;
    if (head_bytes > size)
        head_bytes = size;
    if (memcmp(p, &head, head_bytes) != 0)
        return LAB_CHECK_HEAD;
    if (tail && size >= 16 && memcmp(p + size - 8, &inverse, 8) != 0)
        return LAB_CHECK_TAIL;
    return 0;
}

static int all_zero(const char *p, uint64_t size)
{
    /* The first and last 64 bytes: enough to catch a recycled block left dirty. */
    uint64_t n = size < 64 ? size : 64;
    for (uint64_t i = 0; i < n; i++)
        if (p[i] || p[size - 1 - i])
            return 0;
    return 1;
}

struct run {
    const struct lab_replay_options *options;
    struct lab_policy *policy;
    struct lab_replay_result *result;
    struct lab_sample *samples;
    size_t capacity;
    uint64_t live, usable_live;
    uint64_t sample_ns;         /* time spent sampling, taken out of the loop's time */
};

static void sample(struct run *r, uint64_t op)
{
    uint64_t start = prm_os_monotonic_ns();
    struct lab_stats s;
    lab_stats(r->policy, &s);
    struct lab_replay_result *res = r->result;
    if (s.footprint > res->peak_footprint)
        res->peak_footprint = s.footprint;
    res->final_footprint = s.footprint;
    if (res->samples < r->capacity) {
        struct lab_sample *out = &r->samples[res->samples++];
        out->op = op;
        out->footprint = s.footprint;
        out->live_bytes = r->live;
        out->usable_bytes = r->usable_live;
        out->free_total = s.free_total;
        out->free_largest = s.free_largest;
    }
    if (r->options->visit)
        r->options->visit(r->options->visit_context, op);
    r->sample_ns += prm_os_monotonic_ns() - start;
}

/* The footprint at a new high of the live bytes, without a point in the series: the
 * real allocators' footprint is only known by asking, and a big block that lives
 * between two samples would otherwise never be seen. */
static void probe_peak(struct run *r)
{
    uint64_t start = prm_os_monotonic_ns();
    struct lab_stats s;
    lab_stats(r->policy, &s);
    if (s.footprint > r->result->peak_footprint)
        r->result->peak_footprint = s.footprint;
    r->sample_ns += prm_os_monotonic_ns() - start;
}

/* Before a free or realloc of object o: -1 if it is not live (its malloc failed: the op
 * is skipped and counted), else 0, or the failed pattern check when verifying. */
static int releasable(const struct object *o, const struct lab_op *op, int verify,
                      struct lab_replay_result *res)
{
    if (LAB_UNLIKELY(!o->ptr)) {
        res->skipped_frees++;
        return -1;
    }
    return verify ? check_pattern(o->ptr, o->size, op->id, 8, 1) : 0;
}

static int fail(struct lab_replay_result *res, uint64_t op, int check, int status)
{
    res->error_op = op;
    res->error_detail = check;
    return status;
}

int lab_replay(struct lab_policy *policy, const struct lab_op *ops, size_t n_ops,
               size_t n_objects, const struct lab_replay_options *options,
               struct lab_sample *samples, size_t capacity,
               struct lab_replay_result *result)
{
    memset(result, 0, sizeof *result);
    if (options->stop_after && options->stop_after < n_ops)
        n_ops = options->stop_after;
    /* The table is mapped, not malloc'd: glibc's entry must not see it. */
    size_t table_bytes = lab_round_up((n_objects ? n_objects : 1) * sizeof(struct object),
                                      prm_os_page_size());
    struct object *objects = prm_os_mmap(table_bytes);
    if (!objects)
        return LAB_ERR_NOMEM;
    struct run r = {options, policy, result, samples, capacity, 0, 0, 0};
    const int verify = options->verify;
    const uint64_t every = options->sample_every;
    const struct lab_ops *pops = policy->ops;
    void *self = policy->self;
    uint64_t next_regular = every ? every : UINT64_MAX;
    uint64_t extra = options->sample_at ? options->sample_at : UINT64_MAX;
    uint64_t next_sample = next_regular < extra ? next_regular : extra;
    uint64_t peak_live = 0, next_probe = 0;
    int status = LAB_OK;
    long minor0 = 0, major0 = 0, minor1 = 0, major1 = 0;

    sample(&r, 0);
    r.sample_ns = 0;
    prm_os_page_faults(&minor0, &major0);
    uint64_t start = prm_os_monotonic_ns();
    size_t i;
    for (i = 0; i < n_ops; i++) {
        const struct lab_op *op = &ops[i];
        if (LAB_UNLIKELY(op->id >= n_objects)) {
            status = fail(result, i, LAB_CHECK_ID, LAB_ERR_TRACE);
            break;
        }
        struct object *o = &objects[op->id];
        switch (op->op) {
        case LAB_OP_MALLOC:
        case LAB_OP_CALLOC:
        case LAB_OP_MEMALIGN: {
            if (LAB_UNLIKELY(o->ptr != NULL)) {
                status = fail(result, i, LAB_CHECK_ID, LAB_ERR_TRACE);
                goto out;
            }
            size_t alignment = LAB_ALIGNMENT;
            char *p;
            if (op->op == LAB_OP_MALLOC) {
                p = pops->malloc(self, op->size, LAB_ALIGNMENT);
            } else if (op->op == LAB_OP_CALLOC) {
                p = lab_calloc(policy, op->size);
            } else {
                if (LAB_UNLIKELY(op->align_log2 > 40)) {
                    status = fail(result, i, LAB_CHECK_OP, LAB_ERR_TRACE);
                    goto out;
                }
                size_t a = (size_t)1 << op->align_log2;
                alignment = a > LAB_ALIGNMENT ? a : LAB_ALIGNMENT;
                p = pops->malloc(self, op->size, alignment);
            }
            if (LAB_UNLIKELY(!p)) {
                result->failed++;
                break;
            }
            uint64_t usable = pops->usable(self, p);
            if (verify) {
                if ((uintptr_t)p & (alignment - 1)) {
                    status = fail(result, i, LAB_CHECK_ALIGN, LAB_ERR_VERIFY);
                    goto out;
                }
                if (usable < op->size) {
                    status = fail(result, i, LAB_CHECK_USABLE, LAB_ERR_VERIFY);
                    goto out;
                }
                if (op->op == LAB_OP_CALLOC && !all_zero(p, op->size)) {
                    status = fail(result, i, LAB_CHECK_ZERO, LAB_ERR_VERIFY);
                    goto out;
                }
                write_pattern(p, op->size, op->id);
            }
            if (usable < op->size)
                usable = op->size;      /* the null policy knows no sizes */
            o->ptr = p;
            o->size = op->size;
            o->usable = usable;
            r.live += op->size;
            r.usable_live += usable;
            result->mallocs++;
            break;
        }
        case LAB_OP_FREE: {
            int bad = releasable(o, op, verify, result);
            if (bad < 0)
                break;
            if (bad) {
                status = fail(result, i, bad, LAB_ERR_VERIFY);
                goto out;
            }
            pops->free(self, o->ptr);
            r.live -= o->size;
            r.usable_live -= o->usable;
            o->ptr = NULL;
            result->frees++;
            break;
        }
        case LAB_OP_REALLOC: {
            int bad = releasable(o, op, verify, result);
            if (bad < 0)
                break;
            if (bad) {
                status = fail(result, i, bad, LAB_ERR_VERIFY);
                goto out;
            }
            char *p = lab_realloc(policy, o->ptr, op->size);
            if (LAB_UNLIKELY(!p)) {
                result->failed++;
                break;
            }
            uint64_t usable = pops->usable(self, p);
            if (verify) {
                uint64_t kept = o->size < op->size ? o->size : op->size;
                int bad = check_pattern(p, kept, op->id, kept, 0);
                if (bad) {
                    status = fail(result, i, bad, LAB_ERR_VERIFY);
                    goto out;
                }
                if (((uintptr_t)p & (LAB_ALIGNMENT - 1)) || usable < op->size) {
                    status = fail(result, i, usable < op->size ? LAB_CHECK_USABLE
                                                               : LAB_CHECK_ALIGN, LAB_ERR_VERIFY);
                    goto out;
                }
                write_pattern(p, op->size, op->id);
            }
            if (usable < op->size)
                usable = op->size;
            r.live += op->size - o->size;
            r.usable_live += usable - o->usable;
            o->ptr = p;
            o->size = op->size;
            o->usable = usable;
            result->reallocs++;
            break;
        }
        default:
            status = fail(result, i, LAB_CHECK_OP, LAB_ERR_TRACE);
            goto out;
        }
        if (r.live > peak_live) {
            peak_live = r.live;
            result->internal_at_peak = r.usable_live - r.live;
            if (peak_live >= next_probe) {    /* at most ~64 probes per doubling */
                probe_peak(&r);
                next_probe = peak_live + peak_live / 64 + 1;
            }
        }
        if (r.usable_live - r.live > result->peak_internal)
            result->peak_internal = r.usable_live - r.live;
        if (LAB_UNLIKELY(i + 1 == next_sample)) {
            sample(&r, i + 1);
            if (i + 1 == next_regular)
                next_regular += every;
            if (i + 1 == extra)
                extra = UINT64_MAX;
            next_sample = next_regular < extra ? next_regular : extra;
        }
        /* The O(n) policies can take hours on a long trace: a limit keeps a comparison
         * finite, and the result says where it stopped. */
        if (LAB_UNLIKELY((i & 4095) == 4095) && options->time_limit_ns
            && prm_os_monotonic_ns() - start - r.sample_ns > options->time_limit_ns) {
            result->timed_out = 1;
            i++;
            break;
        }
    }
out:;
    uint64_t end = prm_os_monotonic_ns();
    prm_os_page_faults(&minor1, &major1);
    result->ops = i;
    result->elapsed_ns = end - start - r.sample_ns;
    result->minor_faults = minor1 - minor0;
    result->major_faults = major1 - major0;
    result->peak_live = peak_live;
    if (!every || i % every || i == 0)
        sample(&r, i);              /* the last point, unless just taken */
    else {
        /* Taken at i already; keep peak and final footprint current. */
        struct lab_stats s;
        lab_stats(policy, &s);
        result->final_footprint = s.footprint;
    }
    if (options->free_remaining)
        for (size_t k = 0; k < n_objects; k++)
            if (objects[k].ptr)
                pops->free(self, objects[k].ptr);
    prm_os_munmap(objects, table_bytes);
    return status;
}
