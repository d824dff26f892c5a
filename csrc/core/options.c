/* options.c - the knobs and odd jobs of the public interface: mallopt with glibc's
 * parameter numbers and meanings, malloc_trim, touching pages, and the break and page
 * size as the kernel layer sees them. */
#include "prm.h"
#include "hardened.h"
#include "internal.h"

static void consolidate_arena(prm_arena *av);

/* Is any block allocated, in any arena or mapping? The per-thread caches are chunks of
 * the core's own, so they count. */
static int blocks_live(void)
{
    size_t live = 0;
    FOR_EACH_ARENA(av) {
        prm_lock_acquire(&av->lock);
        live += av->in_use_chunks;
        prm_lock_release(&av->lock);
    }
    prm_lock_acquire(&prmi_state.mmapped.lock);
    live += prmi_state.mmapped.count;
    prm_lock_release(&prmi_state.mmapped.lock);
    return live != 0;
}

/* Set one parameter, glibc's meaning. 1 on success, 0 when the value is refused.
 * Unknown parameters are accepted and ignored, as glibc does, so programs written for
 * glibc keep working. Changing any threshold turns off the dynamic mmap threshold, as
 * in glibc. The caller holds the main arena's lock, or is initialising the allocator. */
int prmi_set_param(int param, long value)
{
    prm_params *mp = params();
    switch (param) {
    case PRM_M_MXFAST:
        if (value < 0 || (size_t)value > PRM_MAX_FAST_REQUEST)
            return 0;
        mp->max_fast = max_fast_for_request((size_t)value);
        return 1;
    case PRM_M_TRIM_THRESHOLD:   /* glibc reads the int as unsigned: -1 means never trim */
        __atomic_store_n(&mp->trim_threshold, (size_t)value, __ATOMIC_RELAXED);
        __atomic_store_n(&mp->no_dyn_threshold, 1, __ATOMIC_RELAXED);
        return 1;
    case PRM_M_TOP_PAD:
        mp->top_pad = (size_t)value;
        __atomic_store_n(&mp->no_dyn_threshold, 1, __ATOMIC_RELAXED);
        return 1;
    case PRM_M_MMAP_THRESHOLD:
        if ((size_t)value > PRM_DEFAULT_MMAP_THRESHOLD_MAX)
            return 0;
        __atomic_store_n(&mp->mmap_threshold, (size_t)value, __ATOMIC_RELAXED);
        __atomic_store_n(&mp->no_dyn_threshold, 1, __ATOMIC_RELAXED);
        return 1;
    case PRM_M_MMAP_MAX:
        if (value < 0 || value > 0x7fffffff)
            return 0;
        mp->n_mmaps_max = (int)value;
        __atomic_store_n(&mp->no_dyn_threshold, 1, __ATOMIC_RELAXED);
        return 1;
    case PRM_M_CHECK_ACTION:
        __atomic_store_n(&mp->check_action, (int)(value & 7), __ATOMIC_RELAXED);
        return 1;
    case PRM_M_PERTURB:
        mp->perturb_byte = (int)(value & 0xff);
        mp->debug = mp->perturb_byte != 0 || mp->canary;
        return 1;
    case PRM_M_CANARY:
        if (value != 0 && value != 1)
            return 0;
        mp->canary = (int)value || mp->hardened;
        mp->debug = mp->perturb_byte != 0 || mp->canary;
        return 1;
    case PRM_M_HARDENED:
        if (value != 0 && value != 1)
            return 0;
        mp->hardened = (int)value;
        mp->canary = (int)value;
        mp->debug = mp->perturb_byte != 0 || mp->canary;
        if (value)
            prmi_faults_install();   /* its traps are named (faults.c) */
        return 1;
    case PRM_M_ARENA_TEST:
        if (value > 0)
            mp->arena_test = (size_t)value;
        return 1;
    case PRM_M_ARENA_MAX:
        if (value > 0)
            mp->arena_max = (size_t)value;
        return 1;
    case PRM_TCACHE_GROW:
        if (value != 0 && value != 1)
            return 0;
        mp->tcache_grow = (int)value;
        return 1;
    case PRM_TCACHE_COUNT:
        if (value < 0 || value > 65535)
            return 0;
        mp->tcache_count = (int)value;
        return 1;
    default:
        return 1;
    }
}

/* mallopt: prmi_set_param under the main arena's lock, then every arena's fast bins are
 * emptied: chunks larger than a lowered max_fast must not stay there (glibc
 * consolidates on every mallopt). */
int prm_mallopt(int param, int value)
{
    prm_arena *main = prmi_main_arena();
    /* A block carries a canary or not from birth, so the setting stays while any lives. */
    if ((param == PRM_M_CANARY || param == PRM_M_HARDENED) &&
        value != (param == PRM_M_CANARY ? params()->canary : params()->hardened) && blocks_live())
        return 0;
    ARENA_ENTER(main, return 0);
    int result = prmi_set_param(param, value);
    ARENA_LEAVE(main);
    FOR_EACH_ARENA(av) {
        consolidate_arena(av);
    }
    return result;
}

static void consolidate_arena(prm_arena *av)
{
    ARENA_ENTER(av, return);
    if (av->have_fastchunks)
        prmi_consolidate(av);
    ARENA_LEAVE(av);
}

static int trim_arena(prm_arena *av, size_t pad)
{
    ARENA_ENTER(av, return 0);
    prmi_drain_if_pending(av);
    prmi_consolidate(av);
    int released = prmi_systrim(av, pad);
    released |= prmi_discard_free_pages(av, pad);
    ARENA_LEAVE(av);
    return released;
}

/* malloc_trim, in every arena: consolidate, give back the top as far as `pad` allows
 * (the break for the main arena, decommitted pages for the others), then hand the whole
 * free pages inside the heaps back with MADV_DONTNEED. 1 if any memory was released. */
int prm_malloc_trim(size_t pad)
{
    int released = 0;
    prmi_tcache_flush();   /* cached chunks pin the memory around them; let them go first */
    FOR_EACH_ARENA(av) {
        released |= trim_arena(av, pad);
    }
    return released;
}

void prm_touch(void *mem, size_t length)
{
    if (mem == NULL || length == 0)
        return;
    size_t page = prm_os_page_size();
    uintptr_t start = (uintptr_t)mem;
    uintptr_t last_page = align_down(start + (length - 1), page);
    /* An atomic add of zero is one write access that leaves the byte as it was: a page
     * not yet backed takes one write fault, not a read fault and then a copy-on-write. */
    for (uintptr_t page_start = align_down(start, page);; page_start += page) {
        uintptr_t a = page_start < start ? start : page_start;
        __atomic_fetch_add((unsigned char *)a, 0, __ATOMIC_RELAXED);
        if (page_start == last_page)
            break;
    }
}

uintptr_t prm_current_break(void)
{
    return prm_os_brk_current();
}

int prm_residency(uintptr_t address, size_t length, unsigned char *pages)
{
    size_t page = prm_os_page_size();
    uintptr_t start = align_down(address, page);
    if (length == 0)
        return 0;
    if (address + length < address)
        return -EINVAL;
    uintptr_t end = align_up(address + length, page);
    if (prm_os_mincore((void *)start, end - start, pages) != 0)
        return -errno;
    return 0;
}

int prm_no_huge_pages(uintptr_t address, size_t length)
{
    size_t page = prm_os_page_size();
    if (length == 0)
        return 0;
    if (address + length < address)
        return -EINVAL;
    uintptr_t start = align_down(address, page);
    uintptr_t end = align_up(address + length, page);
    return prm_os_no_huge_pages((void *)start, end - start) == 0 ? 0 : -errno;
}

size_t prm_page_size(void)
{
    return prm_os_page_size();
}

int prm_inject_os_failures(int op, unsigned count)
{
    return prm_os_inject_failures(op, count);
}
