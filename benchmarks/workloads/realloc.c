/* realloc: growth by realloc, the two common shapes.
 *
 * Vectors: 4 in flight per thread, each starting at 16 bytes (2 elements) and
 * doubling with realloc up to a target of 1, 2, 4, 8 or 16 MiB, then verified and
 * freed. Large blocks are where an allocator can grow in place or remap (mremap)
 * instead of copying. Written and verified: every element in the first 4 KiB, one per
 * page after that, and the last element of each doubling.
 * Strings: 4 in flight per thread, grown by realloc(p, len + k) with k = 1..64 (a naive
 * string builder with no spare capacity) up to 256 B-64 KiB, then verified and freed.
 * Each small step is where in-place growth into the next chunk or the top pays off.
 *
 * ops = realloc calls; 1 in 512 is a vector step, the rest string appends. With -t T,
 * T threads each do their share on their own vectors and strings. */
#include "workload.h"

#define VECS 4
#define STRS 4
#define VEC_EVERY 512

struct vec {
    uint64_t *a;
    size_t len, target;     /* in elements */
    uint64_t id;
};

struct str {
    unsigned char *p;
    size_t len, target;
    uint64_t id;
    unsigned char pat[256 + 64];    /* the string's byte j is pat[j % 256] */
};

static struct opts o;

static inline uint64_t elem(uint64_t id, size_t i)
{
    return mix64(id * 0x9e3779b97f4a7c15ull + i);
}

/* The elements a vector writes when it grows from lo to hi elements (lo = 0 or hi/2):
 * all of the first page, the first of every later page, and the last one. Writes them,
 * or with check set compares them; returns a hash of them. */
static uint64_t span(uint64_t *a, uint64_t id, size_t lo, size_t hi, int check)
{
    const size_t per = PAGE / 8;
    uint64_t h = 0;
    for (size_t i = lo; i < hi; i = i + 1 < per ? i + 1 : (i / per + 1) * per) {
        if (!check)
            a[i] = elem(id, i);
        else if (a[i] != elem(id, i))
            die("realloc: vector %#" PRIx64 " element %zu lost", id, i);
        h += a[i] * (2 * i + 1);
    }
    if (!check)
        a[hi - 1] = elem(id, hi - 1);
    else if (a[hi - 1] != elem(id, hi - 1))
        die("realloc: vector %#" PRIx64 " element %zu lost", id, hi - 1);
    return h + a[hi - 1];
}

static uint64_t vec_check_all(struct vec *v)
{
    uint64_t h = 0;
    for (size_t hi = 2; hi <= v->len; hi *= 2)
        h += span(v->a, v->id, hi / 2 == 1 ? 0 : hi / 2, hi, 1);
    return mix64(h ^ v->len);
}

static uint64_t vec_step(struct vec *v, uint64_t *rng, uint64_t id)
{
    size_t old = v->len, len = old ? 2 * old : 2;
    uint64_t *a = realloc(v->a, len * 8);
    if (!a)
        die("realloc(%zu) returned NULL", len * 8);
    if (old) {
        if (a[0] != elem(v->id, 0) || a[old - 1] != elem(v->id, old - 1))
            die("realloc: vector %#" PRIx64 " lost its contents growing to %zu bytes", v->id, len * 8);
    } else {
        v->id = id;
        v->target = ((size_t)1 << (17 + rng_next(rng) % 5));   /* 1..16 MiB, in elements */
    }
    span(a, v->id, old, len, 0);
    v->a = a;
    v->len = len;
    if (len < v->target)
        return 0;
    uint64_t h = vec_check_all(v);
    free(v->a);
    v->a = NULL;
    v->len = 0;
    return h;
}

static uint64_t str_check_all(const struct str *s)
{
    uint64_t first = 0, last = 0;
    for (size_t j = 0; j < s->len; j += 256)
        if (memcmp(s->p + j, s->pat, s->len - j < 256 ? s->len - j : 256) != 0)
            die("realloc: string %#" PRIx64 " of %zu bytes corrupted", s->id, s->len);
    memcpy(&first, s->p, s->len < 8 ? s->len : 8);
    memcpy(&last, s->p + s->len - (s->len < 8 ? s->len : 8), s->len < 8 ? s->len : 8);
    return mix64(first ^ mix64(last + s->len));
}

static uint64_t str_step(struct str *s, uint64_t *rng, uint64_t id)
{
    size_t k = rng_range(rng, 1, 64);
    if (!s->p) {
        s->id = id;
        s->len = 0;
        s->target = ((size_t)256 << rng_next(rng) % 9) + rng_next(rng) % 256;  /* 256 B..64 KiB */
        for (size_t j = 0; j < sizeof s->pat; j++)
            s->pat[j] = (unsigned char)(id + j * 13);
    }
    unsigned char *p = realloc(s->p, s->len + k);
    if (!p)
        die("realloc(%zu) returned NULL", s->len + k);
    if (s->len && (p[0] != s->pat[0] || p[s->len - 1] != s->pat[(s->len - 1) % 256]))
        die("realloc: string %#" PRIx64 " lost its contents growing to %zu bytes", s->id, s->len + k);
    memcpy(p + s->len, s->pat + s->len % 256, k);
    s->p = p;
    s->len += k;
    if (s->len < s->target)
        return 0;
    uint64_t h = str_check_all(s);
    free(p);
    s->p = NULL;
    return h;
}

static uint64_t worker(unsigned tid, void *ctx)
{
    (void)ctx;
    uint64_t rng = rng_seed(o.seed, tid), ops = share(o.n, o.threads, tid), sum = 0;
    struct vec v[VECS] = {{0}};
    struct str s[STRS] = {{0}};
    for (uint64_t i = 0; i < ops; i++) {
        uint64_t id = ((uint64_t)tid << 48) | i, r = rng_next(&rng);
        if (i % VEC_EVERY == 0)
            sum += vec_step(&v[r % VECS], &rng, id);
        else
            sum += str_step(&s[r % STRS], &rng, id);
    }
    for (unsigned j = 0; j < VECS; j++)
        if (v[j].a) {
            sum += vec_check_all(&v[j]);
            free(v[j].a);
        }
    for (unsigned j = 0; j < STRS; j++)
        if (s[j].p) {
            sum += str_check_all(&s[j]);
            free(s[j].p);
        }
    return sum;
}

int main(int argc, char **argv)
{
    o = parse_args(argc, argv, "realloc growth: doubling vectors to 1-16 MiB, strings by 1-64 B",
                   6000000, 1, 1, MAX_THREADS);
    finish(run_threads(o.threads, worker, NULL), &o, "");
    return 0;
}
