/* pagesim.h - the page-replacement simulator's C interface: traces of page references
 * (built from lists, from valgrind lackey's text, or by generators) and the replacement
 * algorithms of seed 001 run over them, each returning faults, hits, evictions and
 * write-backs.
 *
 * The simulator stands beside the allocator: it shares nothing with the core but the
 * build, allocates with plain calloc/realloc/free, and never prints.
 *
 * pymalloc_real/_build.py hands this header to cffi as it is (minus the preprocessor
 * lines), so it must stay within what cffi's parser takes: no macros with arguments,
 * no inline functions. */
#ifndef PAGESIM_H
#define PAGESIM_H

#include <stddef.h>
#include <stdint.h>

/* Status codes of every function below that can fail. */
enum ps_status {
    PS_OK = 0,
    PS_ERR_NOMEM = 1,       /* calloc/realloc failed (references appended before stay) */
    PS_ERR_INVALID = 2,     /* an argument out of range (the function says which) */
    PS_ERR_TOO_LONG = 3,    /* the trace would pass PS_MAX_LENGTH references */
};

/* The algorithms. */
enum ps_algorithm {
    PS_OPT = 0,             /* Belady: evict the page used farthest in the future */
    PS_NRU = 1,             /* not recently used: R and M bits, four classes */
    PS_LRU = 2,             /* exact least recently used */
    PS_FIFO = 3,            /* first in, first out */
    PS_SECOND_CHANCE = 4,   /* FIFO queue; a referenced head goes to the tail once */
    PS_CLOCK = 5,           /* a hand sweeping a circle of frames */
    PS_AGING = 6,           /* 8-bit counters fed with the R bit at every tick */
    PS_ALGORITHM_COUNT = 7,
};

/* Positions in a trace and page ids are 32-bit so the per-reference arrays stay small;
 * the last value of each is kept as "never" (OPT's next use of a page not used again). */
#define PS_MAX_LENGTH 4294967294
#define PS_MAX_PAGES 4294967294

/* A trace: `length` references, each to a page id in 0..pages-1 and a read or a write.
 * Page numbers (any 64-bit values) are mapped to dense ids in order of first reference,
 * so that per-page state in the simulator is a plain array indexed by id;
 * page_numbers[id] gives the number back. The remaining fields are the builder's:
 * `slots` is an open-addressing hash table of id + 1 (0 = empty) keyed by page number,
 * and next_use is OPT's table, computed on first need (ps_trace_next_use).
 *
 * Create with ps_trace_new, fill with the ps_trace_append*, ps_trace_parse_lackey and
 * ps_trace_generate functions (each appends), release with ps_trace_delete. */
struct ps_trace {
    uint32_t *ids;              /* [length] the page id of each reference */
    uint8_t *writes;            /* [length] 1 for a store, 0 for a load or fetch */
    size_t length;
    size_t capacity;
    uint64_t *page_numbers;     /* [pages] the page number of each id */
    uint32_t pages;
    uint32_t page_capacity;
    uint32_t *slots;            /* [slot_mask + 1] */
    size_t slot_mask;
    uint32_t *next_use;         /* [length] or NULL: see ps_trace_next_use */
};

struct ps_trace *ps_trace_new(void);            /* NULL when out of memory */
void ps_trace_delete(struct ps_trace *trace);   /* NULL is fine */

/* Append n references to the given page numbers; writes[i] != 0 marks a store (writes
 * may be NULL: all loads). */
int ps_trace_append(struct ps_trace *trace, const uint64_t *page_numbers,
                    const uint8_t *writes, size_t n);

/* Append the page touches of n memory accesses: addresses[i] .. addresses[i] +
 * sizes[i] - 1 (a size of 0 counts as 1) touches every page it overlaps, in order, with
 * page number address >> page_shift. writes as for ps_trace_append.
 * PS_ERR_INVALID when page_shift is not in 0..63 or an access runs past 2^64 - 1. */
int ps_trace_append_accesses(struct ps_trace *trace, const uint64_t *addresses,
                             const uint64_t *sizes, const uint8_t *writes, size_t n,
                             unsigned page_shift);

/* Append the references of valgrind lackey's --trace-mem=yes output in text[0..len):
 *   "I  04222cab,3"  instruction fetch (skipped unless with_instructions)
 *   " L 04222cac,4"  load          " S 7ff000398,8"  store
 *   " M 0421c7f0,4"  modify: a load and a store of the same bytes, one reference that
 *                    dirties the page (its store always hits the page its load brought)
 * An access that spans page boundaries touches each page. Other lines (valgrind's
 * "==pid==" messages, blank or malformed lines) are skipped. Only complete lines are
 * parsed: *consumed is set to the length up to and including the last '\n', so a caller
 * reading a file in blocks passes the rest again in front of the next block (and a '\n'
 * after the last line of the file). PS_ERR_INVALID when page_shift is not in 0..63. */
int ps_trace_parse_lackey(struct ps_trace *trace, const char *text, size_t len,
                          unsigned page_shift, int with_instructions, size_t *consumed);

/* Synthetic traces. Every reference is a store with probability write_fraction (0..1);
 * the generator is seeded, so a seed always gives the same trace. Page numbers are
 * 0..pages-1. */
enum ps_generator_kind {
    PS_GEN_SEQUENTIAL = 0,  /* 0, 1, ..., pages-1, 0, 1, ...: a loop over an array */
    PS_GEN_UNIFORM = 1,     /* each reference uniform over all pages: no locality */
    PS_GEN_WORKING_SET = 2, /* with probability `locality` a page of the current working
                               set (working_set consecutive pages at a random base),
                               else any page; the base moves every `phase` references */
};

struct ps_generator {
    int kind;                   /* enum ps_generator_kind */
    uint64_t length;            /* references to append */
    uint32_t pages;             /* > 0 */
    uint32_t working_set;       /* 1..pages (PS_GEN_WORKING_SET) */
    uint64_t phase;             /* > 0 (PS_GEN_WORKING_SET) */
    double locality;            /* 0..1 (PS_GEN_WORKING_SET) */
    double write_fraction;      /* 0..1 */
    uint64_t seed;
};

/* PS_ERR_INVALID when a parameter is out of the ranges above. */
int ps_trace_generate(struct ps_trace *trace, const struct ps_generator *generator);

/* Compute trace->next_use if it is not there yet: next_use[i] is the position of the
 * next reference to the page referenced at i, or UINT32_MAX when there is none. One
 * backward pass. */
int ps_trace_next_use(struct ps_trace *trace);

/* What a run counts. faults + hits = the trace's length; evictions = faults minus the
 * faults that found a free frame; writebacks = evicted pages that were dirty (stored to
 * since they were loaded). Dirty pages still resident at the end are not written back
 * and not counted: the run ends, nothing is evicted. */
struct ps_result {
    uint64_t faults;
    uint64_t hits;
    uint64_t evictions;
    uint64_t writebacks;
};

/* Run `algorithm` over the trace with `frames` page frames (> 0). tick is the number of
 * references between two clearings of the R bits (NRU) or two shifts of the counters
 * (aging); 0 chooses 4 * frames: long enough that a page in steady use is seen
 * referenced, short enough that a page no longer used soon loses its R bit. Other
 * algorithms ignore it. PS_OPT computes the trace's next_use table if needed (hence the
 * non-const trace). PS_ERR_INVALID for frames == 0 or an unknown algorithm. */
int ps_simulate(struct ps_trace *trace, uint32_t frames, int algorithm, uint64_t tick,
                struct ps_result *result);

#endif
