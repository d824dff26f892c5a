/* hardened.h - the checks that keep the classic heap-exploitation techniques from
 * working (issue 16), and hardened mode's pieces: what the core's flows call into.
 * The logic lives in hardened.c; the flows (malloc.c, bins.c, tcache.c) only call. */
#ifndef PRM_HARDENED_H
#define PRM_HARDENED_H

#include "internal.h"

/* Could q be the fd or bk of free chunk p in one of av's doubly linked bins: a bin head
 * of av, or a chunk of av's segments that is free by its boundary tags (the P bit of the
 * chunk after it is clear), and not p itself? A fake free chunk built inside a live one
 * (unsafe unlink, house of einherjar, poison null byte) links to itself, to a global, or
 * to live chunks whose leftover pointers were rewritten: each fails here. Under av's lock. */
PRM_INTERNAL int prmi_link_leads_to_free(prm_arena *av, const prm_chunk *p, prm_chunk *q);

/* A header merged into a bigger free chunk is buried: its size word gets this value,
 * which no chunk has, so that a free (or realloc) through a stale pointer to it is named
 * as the double free it is instead of trusting a leftover header (house of botcake). */
#define PRM_BURIED_HEAD ((size_t)8)
static inline void bury_header(prm_chunk *p)
{
    if (PRM_HARDENING)
        store_size(p, PRM_BURIED_HEAD);
}

#endif
