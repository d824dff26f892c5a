/* _rawdecode.c - decoding the preload library's compact recording (PRMRAW02, layout in
 * csrc/preload/trace.h) in C: pymalloc_real/trace/rawstream.py calls decode(data,
 * sample_mean) and wraps what it returns.
 *
 * Why C: a recording of 10^7 operations is decoded, converted (addresses to dense object
 * ids, realloc's two records to one operation) and walked twice more (the live bytes at
 * every timeline sample and at the peak; each call site's calls, bytes, peak and leaked
 * bytes); in Python that is about 3 µs per operation, here about 0.1 µs.
 *
 * The conversion follows Trace.from_raw's rules (pymalloc_real/trace/model.py): an
 * address names an object from the call that returned it to the free that released it;
 * a free of an unknown address is dropped and counted; an allocation returning a live
 * address is an error (returned as a message, raised by the caller); failed calls
 * (NULL) are dropped. Output records are the packed trace's 24-byte little-endian
 * struct lab_op. A stream cut short keeps every whole record before the cut. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed records are little endian: this decoder writes them natively"
#endif

enum { OP_MALLOC = 1, OP_FREE = 2, OP_REALLOC = 3, OP_CALLOC = 4, OP_MEMALIGN = 5,
       OP_REALLOC_END = 6 };
#define STACK_MRU 16        /* PRMI_REC_STACK_MRU */
enum { EXT_STACK = 1, EXT_THREAD = 2, EXT_SAMPLE = 3, EXT_TEXT = 4, EXT_END = 5 };

typedef struct {
    uint8_t op, align;
    uint16_t thread;
    uint32_t reserved;
    uint64_t id, size;
} lab_op;

/* ---- growable arrays ---------------------------------------------------------------- */

typedef struct {
    void *data;
    size_t count, capacity, item;
} vec;

static void *vec_push(vec *v)
{
    if (v->count == v->capacity) {
        size_t capacity = v->capacity ? v->capacity * 2 : 1024;
        void *data = realloc(v->data, capacity * v->item);
        if (data == NULL)
            return NULL;
        v->data = data;
        v->capacity = capacity;
    }
    return (char *)v->data + v->item * v->count++;
}

/* Grow to at least `count` items, the new ones zeroed. */
static int vec_reserve_zeroed(vec *v, size_t count)
{
    if (count <= v->count)
        return 0;
    if (count > v->capacity) {
        size_t capacity = v->capacity ? v->capacity : 1024;
        while (capacity < count)
            capacity *= 2;
        void *data = realloc(v->data, capacity * v->item);
        if (data == NULL)
            return -1;
        v->data = data;
        v->capacity = capacity;
    }
    memset((char *)v->data + v->count * v->item, 0, (count - v->count) * v->item);
    v->count = count;
    return 0;
}

/* ---- live addresses: open addressing, linear probing, backward-shift deletion -------- */

typedef struct {
    uint64_t *keys;         /* 0: empty (NULL is never live) */
    uint64_t *values;
    size_t mask, count;
} address_map;

static size_t slot_of(const address_map *m, uint64_t key)
{
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 20) & m->mask;
}

static int map_init(address_map *m, size_t capacity)
{
    m->keys = calloc(capacity, sizeof *m->keys);
    m->values = malloc(capacity * sizeof *m->values);
    m->mask = capacity - 1;
    m->count = 0;
    return m->keys && m->values ? 0 : -1;
}

static void map_free(address_map *m)
{
    free(m->keys);
    free(m->values);
}

static int map_grow(address_map *m)
{
    address_map bigger;
    if (map_init(&bigger, (m->mask + 1) * 2) != 0) {
        map_free(&bigger);
        return -1;
    }
    for (size_t i = 0; i <= m->mask; i++) {
        if (m->keys[i] == 0)
            continue;
        size_t j = slot_of(&bigger, m->keys[i]);
        while (bigger.keys[j] != 0)
            j = (j + 1) & bigger.mask;
        bigger.keys[j] = m->keys[i];
        bigger.values[j] = m->values[i];
    }
    bigger.count = m->count;
    map_free(m);
    *m = bigger;
    return 0;
}

static int map_has(const address_map *m, uint64_t key)
{
    for (size_t i = slot_of(m, key);; i = (i + 1) & m->mask) {
        if (m->keys[i] == key)
            return 1;
        if (m->keys[i] == 0)
            return 0;
    }
}

static int map_put(address_map *m, uint64_t key, uint64_t value)
{
    if ((m->count + 1) * 2 > m->mask + 1 && map_grow(m) != 0)
        return -1;
    size_t i = slot_of(m, key);
    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (m->keys[i] == 0)
        m->count++;
    m->keys[i] = key;
    m->values[i] = value;
    return 0;
}

/* Remove `key`; 1 and its value in *value when it was there. */
static int map_pop(address_map *m, uint64_t key, uint64_t *value)
{
    size_t i = slot_of(m, key);
    while (m->keys[i] != key) {
        if (m->keys[i] == 0)
            return 0;
        i = (i + 1) & m->mask;
    }
    *value = m->values[i];
    m->count--;
    /* Shift back the entries that probed past the hole. */
    size_t hole = i;
    for (size_t j = (i + 1) & m->mask; m->keys[j] != 0; j = (j + 1) & m->mask) {
        size_t home = slot_of(m, m->keys[j]);
        if (((j - home) & m->mask) >= ((j - hole) & m->mask)) {
            m->keys[hole] = m->keys[j];
            m->values[hole] = m->values[j];
            hole = j;
        }
    }
    m->keys[hole] = 0;
    return 1;
}

/* ---- the stream ---------------------------------------------------------------------- */

typedef struct {
    const unsigned char *data;
    size_t pos, end;
    int cut;                /* ran past the end: the stream was cut short */
} reader;

static uint64_t get_varint(reader *r)
{
    uint64_t value = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (r->pos >= r->end) {
            r->cut = 1;
            return 0;
        }
        unsigned byte = r->data[r->pos++];
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (byte < 0x80)
            return value;
    }
    r->cut = 1;
    return 0;
}

static unsigned get_byte(reader *r)
{
    if (r->pos >= r->end) {
        r->cut = 1;
        return 0;
    }
    return r->data[r->pos++];
}

static int64_t unzigzag(uint64_t n)
{
    return (int64_t)(n >> 1) ^ -(int64_t)(n & 1);
}

typedef struct {
    int active, known;
    uint64_t oid, old, size;
} pending_realloc;

typedef struct {
    uint64_t op_index, values[6];
    unsigned event;
} sample;

typedef struct {
    double calls, bytes, peak, live;
} site_total;

typedef struct {
    uint32_t stack;
    double bytes;
} owner;

/* ---- decode --------------------------------------------------------------------------- */

typedef struct {
    vec ops;                /* lab_op */
    vec stacks_of_ops;      /* uint32_t */
    vec samples;            /* sample */
    vec pending;            /* pending_realloc, by thread */
    vec used_threads;       /* uint8_t, by thread */
    address_map live;
    PyObject *stacks;       /* {id: (frame, ...)} */
    PyObject *texts;        /* {which: bytes} */
    uint64_t next_id, unknown;
    int finished;
    char error[200];
} state;

static int emit(state *s, unsigned op, unsigned align, unsigned thread, uint64_t id,
                uint64_t size, uint32_t stack)
{
    lab_op *o = vec_push(&s->ops);
    uint32_t *st = vec_push(&s->stacks_of_ops);
    if (o == NULL || st == NULL || vec_reserve_zeroed(&s->used_threads, thread + 1) != 0)
        return -1;
    *o = (lab_op){ (uint8_t)op, (uint8_t)align, (uint16_t)thread, 0, id, size };
    *st = stack;
    ((uint8_t *)s->used_threads.data)[thread] = 1;
    return 0;
}

#define NOMEM() do { PyErr_NoMemory(); return -1; } while (0)

static int extension(state *s, reader *r, unsigned sub, unsigned *thread)
{
    if (sub == EXT_STACK) {
        uint64_t id = get_varint(r), depth = get_varint(r);
        if (r->cut)
            return 0;
        if (depth > 4096) {
            snprintf(s->error, sizeof s->error, "a stack of %llu frames",
                     (unsigned long long)depth);
            return 1;
        }
        PyObject *frames = PyTuple_New((Py_ssize_t)depth);
        if (frames == NULL)
            return -1;
        uint64_t frame = 0;
        for (uint64_t i = 0; i < depth; i++) {
            frame += (uint64_t)unzigzag(get_varint(r));
            PyObject *value = PyLong_FromUnsignedLongLong(frame);
            if (value == NULL) {
                Py_DECREF(frames);
                return -1;
            }
            PyTuple_SET_ITEM(frames, (Py_ssize_t)i, value);
        }
        if (r->cut) {
            Py_DECREF(frames);
            return 0;
        }
        PyObject *key = PyLong_FromUnsignedLongLong(id);
        int rc = key != NULL ? PyDict_SetItem(s->stacks, key, frames) : -1;
        Py_XDECREF(key);
        Py_DECREF(frames);
        return rc;
    }
    if (sub == EXT_THREAD) {
        uint64_t t = get_varint(r);
        if (t > 0xffff) {
            snprintf(s->error, sizeof s->error, "thread %llu", (unsigned long long)t);
            return 1;
        }
        *thread = (unsigned)t;
        return 0;
    }
    if (sub == EXT_SAMPLE) {
        sample one = { s->ops.count, { 0 }, 0 };
        for (int i = 0; i < 6; i++)
            one.values[i] = get_varint(r);
        one.event = get_byte(r);
        if (r->cut)
            return 0;
        sample *slot = vec_push(&s->samples);
        if (slot == NULL)
            NOMEM();
        *slot = one;
        return 0;
    }
    if (sub == EXT_TEXT) {
        unsigned which = get_byte(r);
        uint64_t length = get_varint(r);
        if (r->cut || length > r->end - r->pos) {
            r->cut = 1;
            return 0;
        }
        PyObject *key = PyLong_FromUnsignedLong(which);
        PyObject *text = PyBytes_FromStringAndSize((const char *)r->data + r->pos,
                                                   (Py_ssize_t)length);
        int rc = key && text ? PyDict_SetItem(s->texts, key, text) : -1;
        Py_XDECREF(key);
        Py_XDECREF(text);
        r->pos += length;
        return rc;
    }
    if (sub == EXT_END) {
        s->finished = 1;
        return 0;
    }
    snprintf(s->error, sizeof s->error, "unknown extension record %u at byte %zu", sub,
             r->pos - 1);
    return 1;
}

/* The whole stream into s: 0, 1 with s->error set (a malformed stream), -1 with a
 * Python exception. */
static int decode_stream(state *s, reader *r)
{
    uint64_t ring[16] = { 0 }, last = 0;
    uint32_t mru[STACK_MRU] = { 0 };
    unsigned head = 0, thread = 0;
    while (r->pos < r->end) {
        size_t start = r->pos;
        unsigned tag = r->data[r->pos++];
        unsigned kind = tag & 7;
        if (kind == 0) {
            int rc = extension(s, r, tag >> 3, &thread);
            if (rc != 0 || r->cut)
                return rc;
            continue;
        }
        unsigned code = tag >> 4;
        uint64_t address = 0;
        if (code == 0) {
            address = (uint64_t)((int64_t)(last >> 4) + unzigzag(get_varint(r))) << 4;
        } else if (code < 14) {
            address = ring[(head - code + 1) & 15];
        } else if (code == 14) {
            if (r->end - r->pos < 8) {
                r->cut = 1;
                return 0;
            }
            memcpy(&address, r->data + r->pos, 8);
            r->pos += 8;
        }
        uint32_t stack = 0;
        if (tag & 8) {      /* a place among the stacks used last, or an id (trace.h) */
            uint64_t n = get_varint(r);
            unsigned i = n < STACK_MRU ? (unsigned)n : STACK_MRU - 1;
            stack = n < STACK_MRU ? mru[n] : (uint32_t)(n - STACK_MRU);
            memmove(&mru[1], &mru[0], i * sizeof mru[0]);
            mru[0] = stack;
        }
        uint64_t size = 0;
        unsigned align = 0;
        if (kind != OP_FREE && kind != OP_REALLOC_END)
            size = get_varint(r);
        if (kind == OP_MEMALIGN)
            align = get_byte(r);
        if (r->cut)
            return 0;
        if (address != 0) {
            last = address;
            head = (head + 1) & 15;
            ring[head] = address;
        }
        uint64_t oid;
        if (kind == OP_FREE) {
            if (!map_pop(&s->live, address, &oid)) {
                s->unknown++;
                continue;
            }
            if (emit(s, OP_FREE, 0, thread, oid, 0, 0) != 0)
                NOMEM();
        } else if (kind == OP_MALLOC || kind == OP_CALLOC || kind == OP_MEMALIGN) {
            if (address == 0)
                continue;
            if (map_has(&s->live, address)) {
                snprintf(s->error, sizeof s->error, "byte %zu: an allocation returned %#llx, "
                         "which is still live", start, (unsigned long long)address);
                return 1;
            }
            if (map_put(&s->live, address, s->next_id) != 0 ||
                emit(s, kind, align, thread, s->next_id, size, stack) != 0)
                NOMEM();
            s->next_id++;
        } else if (kind == OP_REALLOC) {
            if (vec_reserve_zeroed(&s->pending, thread + 1) != 0)
                NOMEM();
            pending_realloc *p = &((pending_realloc *)s->pending.data)[thread];
            *p = (pending_realloc){ 1, 0, 0, address, size };
            if (address != 0) {
                p->known = map_pop(&s->live, address, &p->oid);
                if (!p->known)
                    s->unknown++;
            }
        } else if (kind == OP_REALLOC_END) {
            pending_realloc p = { 0 };
            if (thread < s->pending.count) {
                p = ((pending_realloc *)s->pending.data)[thread];
                ((pending_realloc *)s->pending.data)[thread].active = 0;
            }
            if (address != 0 && map_has(&s->live, address)) {
                snprintf(s->error, sizeof s->error, "byte %zu: realloc returned %#llx, which "
                         "is still live", start, (unsigned long long)address);
                return 1;
            }
            int rc = 0;
            if (!p.known) {                 /* realloc(NULL, n), or of an unknown block */
                if (address != 0) {
                    rc = map_put(&s->live, address, s->next_id) |
                         emit(s, OP_MALLOC, 0, thread, s->next_id, p.size, stack);
                    s->next_id++;
                }
            } else if (address != 0) {
                rc = map_put(&s->live, address, p.oid) |
                     emit(s, OP_REALLOC, 0, thread, p.oid, p.size, stack);
            } else if (p.size == 0) {       /* realloc(p, 0) freed p */
                rc = emit(s, OP_FREE, 0, thread, p.oid, 0, 0);
            } else {                        /* failed: p is still there */
                rc = map_put(&s->live, p.old, p.oid);
            }
            if (rc != 0)
                NOMEM();
        } else {
            snprintf(s->error, sizeof s->error, "byte %zu: unknown operation %u", start, kind);
            return 1;
        }
    }
    return 0;
}

/* Threads whose every operation was dropped leave gaps: renumber densely. */
static int renumber_threads(state *s, unsigned *n_threads)
{
    uint8_t *used = s->used_threads.data;
    unsigned n = 0;
    for (size_t t = 0; t < s->used_threads.count; t++)
        n += used[t];
    *n_threads = n;
    if (n == s->used_threads.count)
        return 0;
    uint16_t *map = malloc(s->used_threads.count * sizeof *map);
    if (map == NULL)
        return -1;
    for (size_t t = 0, next = 0; t < s->used_threads.count; t++)
        map[t] = used[t] ? (uint16_t)next++ : 0;
    lab_op *ops = s->ops.data;
    for (size_t i = 0; i < s->ops.count; i++)
        ops[i].thread = map[ops[i].thread];
    free(map);
    return 0;
}

/* ---- the walks: live bytes, the peak, the call sites ----------------------------------- */

/* How many allocations one sampled allocation of `size` bytes stands for
 * (trace/sites.py explains the estimate). */
static double weight(uint64_t size, double mean)
{
    if (mean <= 0)
        return 1.0;
    double p = size > 0 ? -expm1(-(double)size / mean) : 0.0;
    return p > 0 ? 1.0 / p : 0.0;
}

typedef struct {
    uint64_t peak_index;    /* the operation after which live bytes peaked (UINT64_MAX: none) */
    uint64_t peak_live;
    vec lives;              /* uint64_t: live bytes at each sample */
    vec totals;             /* site_total, by stack id */
} walked;

static int walk(state *s, double mean, walked *w)
{
    vec sizes = { NULL, 0, 0, sizeof(uint64_t) };
    vec owners = { NULL, 0, 0, sizeof(owner) };
    const lab_op *ops = s->ops.data;
    const uint32_t *stacks = s->stacks_of_ops.data;
    const sample *samples = s->samples.data;
    int rc = -1;
    if (vec_reserve_zeroed(&sizes, s->next_id + 1) != 0 ||
        vec_reserve_zeroed(&owners, s->next_id + 1) != 0 ||
        vec_reserve_zeroed(&w->lives, s->samples.count) != 0)
        goto out;
    uint64_t *size_of = sizes.data, *lives = w->lives.data, live = 0;
    size_t next_sample = 0;
    w->peak_index = UINT64_MAX;
    w->peak_live = 0;
    for (size_t i = 0; i < s->ops.count; i++) {
        while (next_sample < s->samples.count && samples[next_sample].op_index == i)
            lives[next_sample++] = live;
        const lab_op *o = &ops[i];
        live -= size_of[o->id];
        size_of[o->id] = o->op == OP_FREE ? 0 : o->size;
        live += size_of[o->id];
        if (live > w->peak_live) {
            w->peak_live = live;
            w->peak_index = i;
        }
    }
    while (next_sample < s->samples.count)
        lives[next_sample++] = live;
    /* The sites: each object's bytes belong to the stack that made (or last resized) it. */
    owner *owned = owners.data;
    for (size_t i = 0; i < s->ops.count; i++) {
        const lab_op *o = &ops[i];
        owner *held = &owned[o->id];
        site_total *t;
        if (held->stack != 0) {
            t = &((site_total *)w->totals.data)[held->stack];
            t->live -= held->bytes;
            held->stack = 0;
        }
        uint32_t stack = stacks[i];
        if (o->op != OP_FREE && stack != 0) {
            if (vec_reserve_zeroed(&w->totals, (size_t)stack + 1) != 0)
                goto out;
            t = &((site_total *)w->totals.data)[stack];
            double wt = weight(o->size, mean);
            t->calls += wt;
            t->bytes += (double)o->size * wt;
            t->live += (double)o->size * wt;
            *held = (owner){ stack, (double)o->size * wt };
        }
        if (i == w->peak_index) {
            site_total *all = w->totals.data;
            for (size_t k = 0; k < w->totals.count; k++)
                all[k].peak = all[k].live;
        }
    }
    rc = 0;
out:
    free(sizes.data);
    free(owners.data);
    if (rc != 0)
        PyErr_NoMemory();
    return rc;
}

/* ---- the Python function ------------------------------------------------------------------ */

static PyObject *build_result(state *s, walked *w, unsigned n_threads)
{
    PyObject *samples = PyList_New((Py_ssize_t)s->samples.count);
    PyObject *sites = PyDict_New();
    if (samples == NULL || sites == NULL)
        goto fail;
    const sample *all = s->samples.data;
    const uint64_t *lives = w->lives.data;
    for (size_t i = 0; i < s->samples.count; i++) {
        const sample *x = &all[i];
        PyObject *row = Py_BuildValue("(KKKKKKKKI)", (unsigned long long)x->op_index,
                                      (unsigned long long)x->values[0],
                                      (unsigned long long)lives[i],
                                      (unsigned long long)x->values[1],
                                      (unsigned long long)x->values[2],
                                      (unsigned long long)x->values[3],
                                      (unsigned long long)x->values[4],
                                      (unsigned long long)x->values[5], x->event);
        if (row == NULL)
            goto fail;
        PyList_SET_ITEM(samples, (Py_ssize_t)i, row);
    }
    const site_total *totals = w->totals.data;
    for (size_t k = 1; k < w->totals.count; k++) {
        if (totals[k].calls == 0)
            continue;
        PyObject *key = PyLong_FromSize_t(k);
        PyObject *row = Py_BuildValue("(dddd)", totals[k].calls, totals[k].bytes,
                                      totals[k].peak, totals[k].live);
        int rc = key && row ? PyDict_SetItem(sites, key, row) : -1;
        Py_XDECREF(key);
        Py_XDECREF(row);
        if (rc != 0)
            goto fail;
    }
    PyObject *result = Py_BuildValue(
        "{s:y#,s:y#,s:K,s:I,s:K,s:O,s:N,s:O,s:O,s:N,s:L,s:K}",
        /* (an empty vector's data is NULL, which "y#" would make None) */
        "records", s->ops.data ? (const char *)s->ops.data : "",
        (Py_ssize_t)(s->ops.count * sizeof(lab_op)),
        "op_stacks", s->stacks_of_ops.data ? (const char *)s->stacks_of_ops.data : "",
        (Py_ssize_t)(s->stacks_of_ops.count * sizeof(uint32_t)),
        "n_objects", (unsigned long long)s->next_id, "n_threads", n_threads,
        "unknown_frees", (unsigned long long)s->unknown, "stacks", s->stacks,
        "samples", samples, "texts", s->texts, "finished", s->finished ? Py_True : Py_False,
        "sites", sites,
        "peak_index", w->peak_index == UINT64_MAX ? -1LL : (long long)w->peak_index,
        "peak_live", (unsigned long long)w->peak_live);
    return result;
fail:
    Py_XDECREF(samples);
    Py_XDECREF(sites);
    return NULL;
}

static PyObject *decode(PyObject *module, PyObject *args)
{
    Py_buffer data;
    double mean;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "y*nd", &data, &offset, &mean))
        return NULL;
    state s = { .ops = { NULL, 0, 0, sizeof(lab_op) },
                .stacks_of_ops = { NULL, 0, 0, sizeof(uint32_t) },
                .samples = { NULL, 0, 0, sizeof(sample) },
                .pending = { NULL, 0, 0, sizeof(pending_realloc) },
                .used_threads = { NULL, 0, 0, 1 } };
    walked w = { .lives = { NULL, 0, 0, sizeof(uint64_t) },
                 .totals = { NULL, 0, 0, sizeof(site_total) } };
    PyObject *result = NULL;
    s.stacks = PyDict_New();
    s.texts = PyDict_New();
    if (s.stacks == NULL || s.texts == NULL)
        goto out;
    if (map_init(&s.live, 1 << 16) != 0) {
        PyErr_NoMemory();
        goto out;
    }
    reader r = { data.buf, offset < 0 || offset > data.len ? (size_t)data.len : (size_t)offset,
                 (size_t)data.len, 0 };
    int rc = decode_stream(&s, &r);
    if (rc < 0)
        goto out;
    if (rc > 0) {
        PyErr_SetString(PyExc_ValueError, s.error);
        goto out;
    }
    if (r.cut)
        s.finished = 0;
    unsigned n_threads;
    if (renumber_threads(&s, &n_threads) != 0) {
        PyErr_NoMemory();
        goto out;
    }
    if (walk(&s, mean, &w) != 0)
        goto out;
    result = build_result(&s, &w, n_threads);
out:
    free(s.ops.data);
    free(s.stacks_of_ops.data);
    free(s.samples.data);
    free(s.pending.data);
    free(s.used_threads.data);
    free(w.lives.data);
    free(w.totals.data);
    map_free(&s.live);
    Py_XDECREF(s.stacks);
    Py_XDECREF(s.texts);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    { "decode", decode, METH_VARARGS,
      "decode(data, offset, sample_mean) -> dict: the PRMRAW02 stream of data from offset "
      "(after the header) as packed records, stack ids per record, stacks, samples (with "
      "the live bytes), texts, the peak, and each stack's (calls, bytes, peak, live) "
      "(estimates when sample_mean > 0). ValueError for a malformed stream." },
    { NULL, NULL, 0, NULL },
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "pymalloc_real._rawdecode",
    "The compact recording's decoder (see _rawdecode.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rawdecode(void)
{
    return PyModule_Create(&module_def);
}
