/* pagemap.c - the ownership map's leaves and its marking (pagemap.h says what the map
 * is and who keeps it). */
#include <string.h>

#include "os.h"
#include "pagemap.h"

prm_pagemap prmi_pagemap;

int prmi_pagemap_reserve(uintptr_t start, uintptr_t end)
{
    if (end <= start)
        return 0;
    uintptr_t first = start >> (PRM_PAGEMAP_PAGE_SHIFT + PRM_PAGEMAP_LEAF_BITS);
    uintptr_t last = (end - 1) >> (PRM_PAGEMAP_PAGE_SHIFT + PRM_PAGEMAP_LEAF_BITS);
    if (last >= PRM_PAGEMAP_ROOTS)
        return -1;   /* above 2^48: no kernel hands us such memory unless asked to */
    for (uintptr_t root = first; root <= last; root++) {
        if (__atomic_load_n(&prmi_pagemap.leaves[root], __ATOMIC_ACQUIRE) != NULL)
            continue;
        uint8_t *leaf = prm_os_map_metadata(PRM_PAGEMAP_LEAF);
        if (leaf == NULL)
            return -1;
        uint8_t *expected = NULL;
        /* Arenas grow under their own locks, so two may race for a leaf: one wins. */
        if (__atomic_compare_exchange_n(&prmi_pagemap.leaves[root], &expected, leaf, 0,
                                        __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
            __atomic_fetch_add(&prmi_pagemap.leaf_count, 1, __ATOMIC_RELAXED);
        else
            prm_os_unmap_metadata(leaf, PRM_PAGEMAP_LEAF);
    }
    return 0;
}

void prmi_pagemap_mark(uintptr_t start, uintptr_t end, unsigned owner)
{
    if (end <= start)
        return;
    uintptr_t page = start >> PRM_PAGEMAP_PAGE_SHIFT;
    uintptr_t last = (end - 1) >> PRM_PAGEMAP_PAGE_SHIFT;
    while (page <= last) {
        uint8_t *leaf = __atomic_load_n(&prmi_pagemap.leaves[page >> PRM_PAGEMAP_LEAF_BITS], __ATOMIC_ACQUIRE);
        uintptr_t in_leaf = page & (PRM_PAGEMAP_LEAF - 1);
        uintptr_t count = PRM_PAGEMAP_LEAF - in_leaf;
        if (count > last - page + 1)
            count = last - page + 1;
        if (leaf != NULL)   /* reserved by the caller; a clear of an unreserved range is a no-op */
            memset(leaf + in_leaf, (int)owner, count);
        page += count;
    }
}

size_t prmi_pagemap_bytes(void)
{
    return __atomic_load_n(&prmi_pagemap.leaf_count, __ATOMIC_RELAXED) * PRM_PAGEMAP_LEAF;
}
