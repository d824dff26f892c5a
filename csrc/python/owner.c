/* owner.c - prm_owns (owner.h): the ownership map (csrc/core/pagemap.h) asked about a
 * block's chunk header. A block of another allocator never has its header inside our
 * pages: glibc's chunks and pymalloc's pools keep their headers in their own memory. */
#include <stdint.h>

#include "chunk.h"
#include "pagemap.h"
#include "python/owner.h"

int prm_owns(const void *mem)
{
    uintptr_t address = (uintptr_t)mem;
    return address >= PRM_CHUNK_HDR && prmi_owner_of(address - PRM_CHUNK_HDR) != PRM_OWNER_NONE;
}
