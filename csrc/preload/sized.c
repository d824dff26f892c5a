/* sized.c - the sized deallocation exports of the LD_PRELOAD library: C23's free_sized
 * and free_aligned_sized, and C++'s sized and aligned operator delete (their mangled
 * names, so a C++ program's deletes reach them before libstdc++'s). Each checks the size
 * (and alignment) it is given against the block (hardened.c) and then frees it through
 * the exported free, so the exit report and the recorder see the call. A mismatch is
 * reported like any other misuse. */
#include <stddef.h>

#include "hardened.h"
#include "prm.h"

#define PRM_EXPORT __attribute__((visibility("default")))

void free(void *mem);

#define ANY_SIZE ((size_t)-1)   /* an aligned delete without a size: the alignment alone */

static void free_checked(void *mem, size_t alignment, size_t size)
{
    if (prmi_sized_free_check(mem, alignment, size) == PRM_OK)
        free(mem);
}

static size_t power_of_two_or_any(size_t alignment)
{
    return alignment != 0 && (alignment & (alignment - 1)) == 0 ? alignment : 0;
}

PRM_EXPORT void free_sized(void *mem, size_t size)
{
    free_checked(mem, 0, size);
}

PRM_EXPORT void free_aligned_sized(void *mem, size_t alignment, size_t size)
{
    free_checked(mem, power_of_two_or_any(alignment), size);
}

/* operator delete(void*, std::size_t) and delete[] */
PRM_EXPORT void _ZdlPvm(void *mem, size_t size) { free_checked(mem, 0, size); }
PRM_EXPORT void _ZdaPvm(void *mem, size_t size) { free_checked(mem, 0, size); }
/* operator delete(void*, std::align_val_t) and delete[] */
PRM_EXPORT void _ZdlPvSt11align_val_t(void *mem, size_t alignment) { free_checked(mem, power_of_two_or_any(alignment), ANY_SIZE); }
PRM_EXPORT void _ZdaPvSt11align_val_t(void *mem, size_t alignment) { free_checked(mem, power_of_two_or_any(alignment), ANY_SIZE); }
/* operator delete(void*, std::size_t, std::align_val_t) and delete[] */
PRM_EXPORT void _ZdlPvmSt11align_val_t(void *mem, size_t size, size_t alignment)
{
    free_checked(mem, power_of_two_or_any(alignment), size);
}
PRM_EXPORT void _ZdaPvmSt11align_val_t(void *mem, size_t size, size_t alignment)
{
    free_checked(mem, power_of_two_or_any(alignment), size);
}
