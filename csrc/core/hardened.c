/* hardened.c - the checks that keep classic heap-exploitation techniques from working
 * (tests/c/exploits/ is one program per technique) and, later in this file, hardened
 * mode. Each check is general: links and chunks must lie in our own memory and agree
 * with their neighbours' boundary tags, whatever technique forged them. */
#include "hardened.h"

int prmi_link_leads_to_free(prm_arena *av, const prm_chunk *p, prm_chunk *q)
{
    uintptr_t a = (uintptr_t)q;
    uintptr_t bins = (uintptr_t)&av->bins[0];
    if (a >= bins && a < (uintptr_t)&av->bins[PRM_NBINS])
        return (a - bins) % sizeof(prm_chunk) == 0;
    if (q == p || !prmi_plausible_link(av, q))
        return 0;
    prm_segment *seg = prmi_segment_of(av, a);   /* plausible_link found it */
    size_t size = chunk_size(q);
    if (size < PRM_MINSIZE || !aligned_ok(size) || size > seg->end - a - PRM_CHUNK_HDR)
        return 0;
    return !inuse_at(q, size);
}
