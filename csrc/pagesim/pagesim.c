/* pagesim.c - the page-replacement simulator: building traces of dense page ids (from
 * lists, memory accesses, valgrind lackey's text and generators), OPT's next-use table,
 * and the seven algorithms of pagesim.h run over a trace.
 *
 * Every algorithm keeps its per-page state in arrays indexed by page id (hence the
 * dense ids) and its per-frame state in arrays of min(frames, pages) entries, and
 * costs O(1) per reference (amortized where it sweeps) except OPT, O(log frames), and
 * aging, O(frames) per fault; each says how next to its code. */
#include "pagesim.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX         /* no page: an empty link, or OPT's "never used again" */

/* ---- Traces ------------------------------------------------------------------------------ */

struct ps_trace *ps_trace_new(void)
{
    return calloc(1, sizeof(struct ps_trace));
}

void ps_trace_delete(struct ps_trace *trace)
{
    if (trace == NULL)
        return;
    free(trace->ids);
    free(trace->writes);
    free(trace->page_numbers);
    free(trace->slots);
    free(trace->next_use);
    free(trace);
}

/* Room for `extra` more references. Doubling keeps appending O(1) amortized. */
static int reserve(struct ps_trace *t, size_t extra)
{
    if (extra > PS_MAX_LENGTH - t->length)
        return PS_ERR_TOO_LONG;
    size_t need = t->length + extra;
    if (need <= t->capacity)
        return PS_OK;
    size_t capacity = t->capacity ? t->capacity : 4096;
    while (capacity < need)
        capacity = capacity > PS_MAX_LENGTH / 2 ? PS_MAX_LENGTH : capacity * 2;
    uint32_t *ids = realloc(t->ids, capacity * sizeof *ids);
    if (ids == NULL)
        return PS_ERR_NOMEM;
    t->ids = ids;
    uint8_t *writes = realloc(t->writes, capacity);
    if (writes == NULL)
        return PS_ERR_NOMEM;
    t->writes = writes;
    t->capacity = capacity;
    return PS_OK;
}

/* A table computed for the old length is wrong as soon as the trace grows. */
static void forget_next_use(struct ps_trace *t)
{
    free(t->next_use);
    t->next_use = NULL;
}

static size_t slot_of(const struct ps_trace *t, uint64_t page)
{
    /* Fibonacci hashing, folded: consecutive page numbers (the usual case) spread out. */
    uint64_t h = page * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 32)) & t->slot_mask;
}

/* Double the hash table (or create it) and put every id back. Kept at most half full,
 * so probes stay short. */
static int grow_slots(struct ps_trace *t)
{
    size_t count = t->slots ? (t->slot_mask + 1) * 2 : 1024;
    uint32_t *slots = calloc(count, sizeof *slots);
    if (slots == NULL)
        return PS_ERR_NOMEM;
    free(t->slots);
    t->slots = slots;
    t->slot_mask = count - 1;
    for (uint32_t id = 0; id < t->pages; id++) {
        size_t i = slot_of(t, t->page_numbers[id]);
        while (slots[i] != 0)
            i = (i + 1) & t->slot_mask;
        slots[i] = id + 1;
    }
    return PS_OK;
}

/* The id of `page`, a new one (the next integer) if the trace has not seen it. */
static int page_id(struct ps_trace *t, uint64_t page, uint32_t *id)
{
    if (t->slots == NULL && grow_slots(t) != PS_OK)
        return PS_ERR_NOMEM;
    size_t i = slot_of(t, page);
    for (uint32_t s; (s = t->slots[i]) != 0; i = (i + 1) & t->slot_mask) {
        if (t->page_numbers[s - 1] == page) {
            *id = s - 1;
            return PS_OK;
        }
    }
    if (t->pages == PS_MAX_PAGES)
        return PS_ERR_TOO_LONG;
    if (t->pages == t->page_capacity) {
        uint32_t capacity = t->page_capacity ? t->page_capacity : 1024;
        capacity = capacity > PS_MAX_PAGES / 2 ? PS_MAX_PAGES : capacity * 2;
        uint64_t *numbers = realloc(t->page_numbers, (size_t)capacity * sizeof *numbers);
        if (numbers == NULL)
            return PS_ERR_NOMEM;
        t->page_numbers = numbers;
        t->page_capacity = capacity;
    }
    if ((size_t)t->pages + 1 > (t->slot_mask + 1) / 2) {
        if (grow_slots(t) != PS_OK)
            return PS_ERR_NOMEM;
        for (i = slot_of(t, page); t->slots[i] != 0; i = (i + 1) & t->slot_mask)
            ;
    }
    *id = t->pages;
    t->page_numbers[t->pages] = page;
    t->slots[i] = ++t->pages;
    return PS_OK;
}

/* Appending one reference. Consecutive references to one page are the rule in real
 * traces (a loop's fetches, a struct's fields), so the last lookup is remembered and
 * most references skip the hash table. The caller has reserved room. */
struct appender {
    struct ps_trace *trace;
    uint64_t last_page;
    uint32_t last_id;           /* NONE before the first reference */
};

static int append_one(struct appender *a, uint64_t page, uint8_t write)
{
    struct ps_trace *t = a->trace;
    if (page != a->last_page || a->last_id == NONE) {
        int rc = page_id(t, page, &a->last_id);
        if (rc != PS_OK) {
            a->last_id = NONE;
            return rc;
        }
        a->last_page = page;
    }
    t->ids[t->length] = a->last_id;
    t->writes[t->length] = write;
    t->length++;
    return PS_OK;
}

/* The pages touched by [address, address + size), size 0 counting as 1. */
static int append_span(struct appender *a, uint64_t address, uint64_t size, uint8_t write,
                       unsigned shift)
{
    uint64_t first = address >> shift;
    uint64_t offset = address & ((UINT64_C(1) << shift) - 1);
    uint64_t extent = size ? size - 1 : 0;
    if (extent > UINT64_MAX - address)
        return PS_ERR_INVALID;      /* the access would run past the last address */
    uint64_t count = ((offset + extent) >> shift) + 1;
    int rc = reserve(a->trace, count);
    for (uint64_t k = 0; rc == PS_OK && k < count; k++)
        rc = append_one(a, first + k, write);
    return rc;
}

int ps_trace_append(struct ps_trace *trace, const uint64_t *page_numbers,
                    const uint8_t *writes, size_t n)
{
    int rc = reserve(trace, n);
    if (rc != PS_OK)
        return rc;
    forget_next_use(trace);
    struct appender a = { trace, 0, NONE };
    for (size_t i = 0; rc == PS_OK && i < n; i++)
        rc = append_one(&a, page_numbers[i], writes != NULL && writes[i] != 0);
    return rc;
}

int ps_trace_append_accesses(struct ps_trace *trace, const uint64_t *addresses,
                             const uint64_t *sizes, const uint8_t *writes, size_t n,
                             unsigned page_shift)
{
    if (page_shift > 63)
        return PS_ERR_INVALID;
    forget_next_use(trace);
    struct appender a = { trace, 0, NONE };
    int rc = PS_OK;
    for (size_t i = 0; rc == PS_OK && i < n; i++)
        rc = append_span(&a, addresses[i], sizes[i], writes != NULL && writes[i] != 0,
                         page_shift);
    return rc;
}

/* ---- lackey's text ------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One line without its '\n'. Returns 0 and fills the access if the line is one, -1 if
 * it is to be skipped. Strict about the shape, so a "==pid==" message or a stray line
 * of the program's own output is never taken for an access. */
static int parse_access(const char *p, const char *end, int with_instructions,
                        uint64_t *address, uint64_t *size, uint8_t *write)
{
    if (end - p < 4)
        return -1;
    if (p[0] == 'I' && p[1] == ' ') {
        if (!with_instructions)
            return -1;
        *write = 0;
    } else if (p[0] == ' ' && p[2] == ' ' && (p[1] == 'L' || p[1] == 'S' || p[1] == 'M')) {
        *write = p[1] != 'L';
    } else {
        return -1;
    }
    p += 2;
    while (p < end && *p == ' ')
        p++;
    uint64_t value = 0;
    int digits = 0;
    for (int v; p < end && (v = hex_value(*p)) >= 0; p++, digits++)
        value = value << 4 | (uint64_t)v;
    if (digits == 0 || digits > 16 || p == end || *p != ',')
        return -1;
    *address = value;
    value = 0;
    digits = 0;
    for (p++; p < end && *p >= '0' && *p <= '9'; p++, digits++)
        value = value * 10 + (uint64_t)(*p - '0');
    if (digits == 0 || digits > 9 || (value > 0 && value - 1 > UINT64_MAX - *address))
        return -1;              /* no size, or an access past the last address */
    while (p < end && (*p == ' ' || *p == '\r'))
        p++;
    if (p != end)
        return -1;
    *size = value;
    return 0;
}

int ps_trace_parse_lackey(struct ps_trace *trace, const char *text, size_t len,
                          unsigned page_shift, int with_instructions, size_t *consumed)
{
    *consumed = 0;
    if (page_shift > 63)
        return PS_ERR_INVALID;
    size_t complete = len;
    while (complete > 0 && text[complete - 1] != '\n')
        complete--;
    forget_next_use(trace);
    struct appender a = { trace, 0, NONE };
    const char *line = text, *stop = text + complete;
    while (line < stop) {
        const char *end = memchr(line, '\n', (size_t)(stop - line));
        uint64_t address, size;
        uint8_t write;
        if (parse_access(line, end, with_instructions, &address, &size, &write) == 0) {
            int rc = append_span(&a, address, size, write, page_shift);
            if (rc != PS_OK) {
                /* The line's earlier pages may be in; the caller only sees the error. */
                *consumed = (size_t)(line - text);
                return rc;
            }
        }
        line = end + 1;
    }
    *consumed = complete;
    return PS_OK;
}

/* ---- Generators ------------------------------------------------------------------------------ */

/* splitmix64: tiny, fast, and good enough that the traces have no visible pattern. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in 0..n-1 by multiply-and-shift (no division, bias below 2^-32 * n). */
static uint32_t random_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((next_random(state) >> 32) * (uint64_t)n) >> 32);
}

/* A probability as a threshold on a 32-bit random number: 0 never, 2^32 always. */
static uint64_t threshold_of(double probability)
{
    return (uint64_t)(probability * 4294967296.0);
}

static int chance(uint64_t *state, uint64_t threshold)
{
    return (next_random(state) & 0xFFFFFFFFu) < threshold;
}

static int valid_probability(double p)
{
    return p >= 0.0 && p <= 1.0;        /* false for NaN too */
}

int ps_trace_generate(struct ps_trace *trace, const struct ps_generator *g)
{
    int local = g->kind == PS_GEN_WORKING_SET;
    if (g->kind < PS_GEN_SEQUENTIAL || g->kind > PS_GEN_WORKING_SET || g->pages == 0 ||
        !valid_probability(g->write_fraction) ||
        (local && (g->working_set == 0 || g->working_set > g->pages || g->phase == 0 ||
                   !valid_probability(g->locality))))
        return PS_ERR_INVALID;
    if (g->length > PS_MAX_LENGTH)
        return PS_ERR_TOO_LONG;
    int rc = reserve(trace, (size_t)g->length);
    if (rc != PS_OK)
        return rc;
    forget_next_use(trace);
    struct appender a = { trace, 0, NONE };
    uint64_t state = g->seed;
    uint64_t writes = threshold_of(g->write_fraction), stay = threshold_of(g->locality);
    uint32_t base = 0;
    for (uint64_t i = 0; rc == PS_OK && i < g->length; i++) {
        uint32_t page;
        if (g->kind == PS_GEN_SEQUENTIAL) {
            page = (uint32_t)(i % g->pages);
        } else if (g->kind == PS_GEN_UNIFORM) {
            page = random_below(&state, g->pages);
        } else {
            if (i % g->phase == 0)
                base = random_below(&state, g->pages - g->working_set + 1);
            page = chance(&state, stay) ? base + random_below(&state, g->working_set)
                                        : random_below(&state, g->pages);
        }
        rc = append_one(&a, page, (uint8_t)chance(&state, writes));
    }
    return rc;
}

int ps_trace_next_use(struct ps_trace *t)
{
    if (t->next_use != NULL)
        return PS_OK;
    uint32_t *next = malloc(t->length ? t->length * sizeof *next : 1);
    uint32_t *last = malloc(t->pages ? (size_t)t->pages * sizeof *last : 1);
    if (next == NULL || last == NULL) {
        free(next);
        free(last);
        return PS_ERR_NOMEM;
    }
    memset(last, 0xFF, (size_t)t->pages * sizeof *last);      /* NONE: not used later */
    for (size_t i = t->length; i-- > 0;) {
        uint32_t id = t->ids[i];
        next[i] = last[id];
        last[id] = (uint32_t)i;
    }
    free(last);
    t->next_use = next;
    return PS_OK;
}

/* ---- The run: what every algorithm shares ------------------------------------------------- */

/* Per-page bits, the page-table entry's: present, modified (M) and referenced (R). */
enum { RESIDENT = 1, DIRTY = 2, REFERENCED = 4 };

struct run {
    const uint32_t *ids;
    const uint8_t *writes;      /* 0 or 1 (the builders store nothing else) */
    const uint32_t *next_use;   /* OPT only */
    size_t length;
    uint32_t pages;
    uint32_t frames;            /* min(frames asked, pages): more could never be used */
    uint64_t tick;
    uint8_t *state;             /* [pages] the bits above */
    uint64_t faults, evictions, writebacks;
};

/* The reference to a resident page sets R, and M if it is a store, as the MMU does. */
static inline void hit(struct run *r, uint32_t id, uint8_t write)
{
    r->state[id] |= (uint8_t)(REFERENCED | write << 1);
}

/* The faulting reference loads the page and is itself a reference, so R is set. */
static inline void load(struct run *r, uint32_t id, uint8_t write)
{
    r->faults++;
    r->state[id] = (uint8_t)(RESIDENT | REFERENCED | write << 1);
}

/* A dirty victim must be written to disk before its frame is reused. */
static inline void evict(struct run *r, uint32_t victim)
{
    r->evictions++;
    r->writebacks += (r->state[victim] & DIRTY) != 0;
    r->state[victim] = 0;
}

/* ---- FIFO and clock: a circle of frames ---------------------------------------------------- */

/* ring[] holds the resident pages in order of arrival, starting at the hand (once the
 * ring is full). FIFO evicts the page under the hand. Clock first moves the hand past
 * pages whose R bit is set, clearing it: each such page gets a second chance. The sweep
 * is amortized O(1): every R bit it clears was set by one earlier reference.
 *
 * Second chance (below) makes the same decisions: see run_second_chance. */
static inline __attribute__((always_inline)) int run_ring(struct run *r, const int clock)
{
    uint32_t *ring = malloc((size_t)r->frames * sizeof *ring);
    if (ring == NULL)
        return PS_ERR_NOMEM;
    uint32_t used = 0, hand = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        if (r->state[id] & RESIDENT) {
            hit(r, id, write);
            continue;
        }
        if (used < r->frames) {
            ring[used++] = id;  /* filling up: the hand stays on the oldest, slot 0 */
        } else {
            while (clock && (r->state[ring[hand]] & REFERENCED)) {
                r->state[ring[hand]] &= (uint8_t)~REFERENCED;
                hand = hand + 1 == r->frames ? 0 : hand + 1;
            }
            evict(r, ring[hand]);
            ring[hand] = id;    /* the newest, so the last the hand will reach */
            hand = hand + 1 == r->frames ? 0 : hand + 1;
        }
        load(r, id, write);
    }
    free(ring);
    return PS_OK;
}

/* ---- Second chance: a FIFO queue ------------------------------------------------------------ */

/* The textbook's second chance: pages in a FIFO queue (a singly linked list through
 * next[], oldest at head); to evict, look at the head: R clear, evict it; R set, clear
 * it and move the page to the tail as if it had just arrived, then look again.
 *
 * It faults exactly where clock does. Once every frame is used, the queue read from its
 * head is the clock's circle read from the hand: moving the head to the tail is the
 * hand stepping past it, and the new page joins the tail, which is the slot just behind
 * the hand where clock puts it. While frames are free, both append in order of arrival.
 * So every decision is the same; clock only does it by moving an index instead of
 * relinking, which is why it is called an implementation of second chance. */
static int run_second_chance(struct run *r)
{
    uint32_t *next = malloc((size_t)r->pages * sizeof *next);
    if (next == NULL)
        return PS_ERR_NOMEM;
    uint32_t head = NONE, tail = NONE, used = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        if (r->state[id] & RESIDENT) {
            hit(r, id, write);
            continue;
        }
        if (used < r->frames) {
            used++;
        } else {
            while (r->state[head] & REFERENCED) {
                r->state[head] &= (uint8_t)~REFERENCED;
                if (head != tail) {     /* with one frame the page is already last */
                    uint32_t again = head;
                    head = next[again];
                    next[tail] = again;
                    tail = again;
                    next[again] = NONE;
                }
            }
            uint32_t victim = head;
            head = next[victim];
            if (head == NONE)
                tail = NONE;
            evict(r, victim);
        }
        load(r, id, write);
        next[id] = NONE;
        if (tail == NONE)
            head = id;
        else
            next[tail] = id;
        tail = id;
    }
    free(next);
    return PS_OK;
}

/* ---- LRU: a list in order of last use ----------------------------------------------------- */

/* Exact LRU: resident pages on a doubly linked list through prev[]/next[], most recently
 * used at head. A hit moves the page to the head, a fault evicts the tail: O(1). */
static int run_lru(struct run *r)
{
    uint32_t *prev = malloc((size_t)r->pages * sizeof *prev);
    uint32_t *next = malloc((size_t)r->pages * sizeof *next);
    if (prev == NULL || next == NULL) {
        free(prev);
        free(next);
        return PS_ERR_NOMEM;
    }
    uint32_t head = NONE, tail = NONE, used = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        if (r->state[id] & RESIDENT) {
            hit(r, id, write);
            if (id == head)
                continue;
            next[prev[id]] = next[id];          /* unlink; id is not the head */
            if (next[id] != NONE)
                prev[next[id]] = prev[id];
            else
                tail = prev[id];
        } else {
            if (used < r->frames) {
                used++;
            } else {
                uint32_t victim = tail;
                tail = prev[victim];
                if (tail != NONE)
                    next[tail] = NONE;
                else
                    head = NONE;
                evict(r, victim);
            }
            load(r, id, write);
        }
        prev[id] = NONE;                        /* push at the head */
        next[id] = head;
        if (head != NONE)
            prev[head] = id;
        else
            tail = id;
        head = id;
    }
    free(prev);
    free(next);
    return PS_OK;
}

/* ---- NRU: four classes ------------------------------------------------------------------------ */

/* Not recently used. Each resident page is in class 2R + M (0: not referenced, clean;
 * 1: not referenced, dirty; 2: referenced, clean; 3: referenced, dirty), and every
 * `tick` references the R bits are cleared, as an OS does on a clock interrupt. A fault
 * evicts from the lowest non-empty class.
 *
 * Each class is a doubly linked list (through prev[]/next[]) in order of entry into the
 * class, and the victim is the head of the lowest one: the page that has been in that
 * class longest, which makes the choice deterministic and spreads evictions round
 * robin over the class. Clearing walks only classes 2 and 3, moving them in order to
 * the tails of 0 and 1: they hold at most one page per reference since the last tick,
 * so the walk is amortized O(1) per reference. */
struct classes {
    uint32_t *prev, *next;
    uint32_t head[4], tail[4];
};

static unsigned class_of(uint8_t state)
{
    return (state & REFERENCED ? 2u : 0u) | (state & DIRTY ? 1u : 0u);
}

static void class_unlink(struct classes *c, unsigned k, uint32_t id)
{
    if (c->prev[id] != NONE)
        c->next[c->prev[id]] = c->next[id];
    else
        c->head[k] = c->next[id];
    if (c->next[id] != NONE)
        c->prev[c->next[id]] = c->prev[id];
    else
        c->tail[k] = c->prev[id];
}

static void class_append(struct classes *c, unsigned k, uint32_t id)
{
    c->next[id] = NONE;
    c->prev[id] = c->tail[k];
    if (c->tail[k] != NONE)
        c->next[c->tail[k]] = id;
    else
        c->head[k] = id;
    c->tail[k] = id;
}

static int run_nru(struct run *r)
{
    struct classes c = { malloc((size_t)r->pages * sizeof *c.prev),
                         malloc((size_t)r->pages * sizeof *c.next),
                         { NONE, NONE, NONE, NONE }, { NONE, NONE, NONE, NONE } };
    if (c.prev == NULL || c.next == NULL) {
        free(c.prev);
        free(c.next);
        return PS_ERR_NOMEM;
    }
    uint32_t used = 0;
    uint64_t since_tick = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        uint8_t before = r->state[id];
        if (before & RESIDENT) {
            hit(r, id, write);
            unsigned from = class_of(before), to = class_of(r->state[id]);
            if (from != to) {
                class_unlink(&c, from, id);
                class_append(&c, to, id);
            }
        } else {
            if (used < r->frames) {
                used++;
            } else {
                unsigned k = 0;
                while (c.head[k] == NONE)       /* some class is non-empty: frames > 0 */
                    k++;
                uint32_t victim = c.head[k];
                class_unlink(&c, k, victim);
                evict(r, victim);
            }
            load(r, id, write);
            class_append(&c, class_of(r->state[id]), id);
        }
        if (++since_tick == r->tick) {
            since_tick = 0;
            for (unsigned k = 2; k < 4; k++) {
                for (uint32_t p = c.head[k], following; p != NONE; p = following) {
                    following = c.next[p];
                    r->state[p] &= (uint8_t)~REFERENCED;
                    class_append(&c, k - 2, p);
                }
                c.head[k] = c.tail[k] = NONE;
            }
        }
    }
    free(c.prev);
    free(c.next);
    return PS_OK;
}

/* ---- Aging ---------------------------------------------------------------------------------- */

/* Aging, the software approximation of LRU: every `tick` references each resident
 * page's 8-bit counter shifts right and takes its R bit as the new top bit, and R is
 * cleared. A fault evicts the page with the smallest (R, counter): R, the newest
 * information, ranks first, so a page loaded since the last tick (counter still 0) is
 * not the automatic victim. Ties go to the lowest frame. The victim is found by a scan
 * of the frames, O(frames) per fault: aging is here to compare, not to be fast. */
static int run_aging(struct run *r)
{
    uint32_t *frame = malloc((size_t)r->frames * sizeof *frame);
    uint8_t *counter = calloc(r->pages, 1);
    if (frame == NULL || counter == NULL) {
        free(frame);
        free(counter);
        return PS_ERR_NOMEM;
    }
    uint32_t used = 0;
    uint64_t since_tick = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        if (r->state[id] & RESIDENT) {
            hit(r, id, write);
        } else {
            uint32_t slot = used;
            if (used < r->frames) {
                used++;
            } else {
                unsigned best = 0x200;
                for (uint32_t f = 0; f < r->frames; f++) {
                    uint32_t p = frame[f];
                    unsigned key = (r->state[p] & REFERENCED ? 0x100u : 0u) | counter[p];
                    if (key < best) {
                        best = key;
                        slot = f;
                    }
                }
                evict(r, frame[slot]);
            }
            frame[slot] = id;
            counter[id] = 0;
            load(r, id, write);
        }
        if (++since_tick == r->tick) {
            since_tick = 0;
            for (uint32_t f = 0; f < used; f++) {
                uint32_t p = frame[f];
                counter[p] = (uint8_t)(counter[p] >> 1 | (r->state[p] & REFERENCED ? 0x80 : 0));
                r->state[p] &= (uint8_t)~REFERENCED;
            }
        }
    }
    free(frame);
    free(counter);
    return PS_OK;
}

/* ---- OPT: a heap keyed by next use ---------------------------------------------------------- */

/* Belady's optimal algorithm: evict the resident page whose next use is farthest away
 * (never used again counts as farthest, NONE being the largest key). The resident pages
 * sit in a binary max-heap of (next use, page), with each page's slot in where[]. A hit
 * at position i finds the page's key equal to i, and raises it to next_use[i]: the page
 * sifts up. A fault replaces the root and sifts down. O(log frames) per reference. */
struct heap_entry {
    uint32_t key;               /* the position of the page's next reference */
    uint32_t page;
};

struct opt_heap {
    struct heap_entry *entry;
    uint32_t *where;            /* [pages] a resident page's index in entry[] */
};

static void heap_place(struct opt_heap *h, uint32_t slot, struct heap_entry e)
{
    h->entry[slot] = e;
    h->where[e.page] = slot;
}

static void sift_up(struct opt_heap *h, uint32_t slot)
{
    struct heap_entry e = h->entry[slot];
    while (slot > 0) {
        uint32_t parent = (slot - 1) / 2;
        if (h->entry[parent].key >= e.key)
            break;
        heap_place(h, slot, h->entry[parent]);
        slot = parent;
    }
    heap_place(h, slot, e);
}

static void sift_down(struct opt_heap *h, uint32_t size, uint32_t slot)
{
    struct heap_entry e = h->entry[slot];
    for (;;) {
        uint64_t child = 2 * (uint64_t)slot + 1;
        if (child >= size)
            break;
        if (child + 1 < size && h->entry[child + 1].key > h->entry[child].key)
            child++;
        if (h->entry[child].key <= e.key)
            break;
        heap_place(h, slot, h->entry[child]);
        slot = (uint32_t)child;
    }
    heap_place(h, slot, e);
}

static int run_opt(struct run *r)
{
    struct opt_heap h = { malloc((size_t)r->frames * sizeof *h.entry),
                          malloc((size_t)r->pages * sizeof *h.where) };
    if (h.entry == NULL || h.where == NULL) {
        free(h.entry);
        free(h.where);
        return PS_ERR_NOMEM;
    }
    uint32_t used = 0;
    for (size_t i = 0; i < r->length; i++) {
        uint32_t id = r->ids[i];
        uint8_t write = r->writes[i];
        struct heap_entry e = { r->next_use[i], id };
        if (r->state[id] & RESIDENT) {
            hit(r, id, write);
            uint32_t slot = h.where[id];
            h.entry[slot].key = e.key;
            sift_up(&h, slot);
        } else if (used < r->frames) {
            load(r, id, write);
            heap_place(&h, used, e);
            sift_up(&h, used++);
        } else {
            evict(r, h.entry[0].page);
            load(r, id, write);
            heap_place(&h, 0, e);
            sift_down(&h, used, 0);
        }
    }
    free(h.entry);
    free(h.where);
    return PS_OK;
}

/* ---- Entry point ------------------------------------------------------------------------------ */

int ps_simulate(struct ps_trace *trace, uint32_t frames, int algorithm, uint64_t tick,
                struct ps_result *result)
{
    memset(result, 0, sizeof *result);
    if (frames == 0 || algorithm < 0 || algorithm >= PS_ALGORITHM_COUNT)
        return PS_ERR_INVALID;
    if (trace->length == 0)
        return PS_OK;
    if (algorithm == PS_OPT) {
        int rc = ps_trace_next_use(trace);
        if (rc != PS_OK)
            return rc;
    }
    struct run r = {
        .ids = trace->ids, .writes = trace->writes, .next_use = trace->next_use,
        .length = trace->length, .pages = trace->pages,
        .frames = frames < trace->pages ? frames : trace->pages,
        .tick = tick ? tick : 4 * (uint64_t)frames,
        .state = calloc(trace->pages, 1),
    };
    if (r.state == NULL)
        return PS_ERR_NOMEM;
    int rc;
    switch (algorithm) {
    case PS_OPT:           rc = run_opt(&r); break;
    case PS_NRU:           rc = run_nru(&r); break;
    case PS_LRU:           rc = run_lru(&r); break;
    case PS_FIFO:          rc = run_ring(&r, 0); break;
    case PS_SECOND_CHANCE: rc = run_second_chance(&r); break;
    case PS_CLOCK:         rc = run_ring(&r, 1); break;
    default:               rc = run_aging(&r); break;
    }
    free(r.state);
    if (rc == PS_OK) {
        result->faults = r.faults;
        result->hits = r.length - r.faults;
        result->evictions = r.evictions;
        result->writebacks = r.writebacks;
    }
    return rc;
}
