/* presize.c - seed 001's "working set" for the LD_PRELOAD library: read a profile that an
 * earlier run wrote (profile=PATH, trace.c) and, while the allocator initialises (before
 * the first allocation is served), grow the main heap's top to the footprint the program
 * reached then (`heap_peak`), back it with pages in one call, and keep the heap from
 * being trimmed below that size.
 *
 * Why only this: the profile's classes could also be carved into chunks for the bins
 * and the thread caches, but carving ahead of time would fix the chunks' order in
 * memory and bypass the placement the core would have chosen; growing top leaves every
 * invariant as it is (top is simply bigger, as if top_pad had been large) and removes
 * exactly the start-up cost the seed talks about: the brk calls and the page faults of
 * a heap growing a page at a time.
 *
 * Runs inside the allocator's initialisation: no allocation, no stdio, the file read
 * through os.c into a static buffer, the main arena used directly (prmi_main_arena
 * would re-enter the initialisation). */
#include <string.h>

#include "internal.h"
#include "prm.h"
#include "trace.h"

#define PRESIZE_MAX ((size_t)4 << 30)   /* a larger heap_peak is refused as implausible */

static struct {
    int requested;
    size_t presized;            /* bytes the heap was grown to (0: not presized) */
    char path[1024];
    char text[4096];            /* the head of the profile: heap_peak is near the top */
} presize;

int prmi_presize_option(const char *value, size_t length)
{
    if (length == 0 || length >= sizeof presize.path)
        return 0;
    memcpy(presize.path, value, length);
    presize.path[length] = '\0';
    presize.requested = 1;
    return 1;
}

size_t prmi_presized_bytes(void)
{
    return presize.presized;
}

static void complain(const char *what)
{
    prm_os_write_stderr("pymalloc_real: presize: ", 24);
    prm_os_write_stderr(what, strlen(what));
    prm_os_write_stderr(presize.path, strlen(presize.path));
    prm_os_write_stderr("\n", 1);
}

/* The number after "key " at the start of a line, or 0. */
static uint64_t find_value(const char *text, size_t length, const char *key)
{
    size_t key_length = strlen(key);
    for (size_t i = 0; i + key_length < length; i++) {
        if ((i != 0 && text[i - 1] != '\n') || memcmp(text + i, key, key_length) != 0 ||
            text[i + key_length] != ' ')
            continue;
        uint64_t value = 0;
        for (size_t j = i + key_length + 1; j < length && text[j] >= '0' && text[j] <= '9'; j++) {
            if (value > (UINT64_MAX - 9) / 10)
                return 0;
            value = value * 10 + (uint64_t)(text[j] - '0');
        }
        return value;
    }
    return 0;
}

void prmi_presize_apply(void)
{
    if (!presize.requested)
        return;
    long length = prm_os_read_file(presize.path, presize.text, sizeof presize.text);
    if (length < 0) {
        complain("cannot read the profile ");
        return;
    }
    uint64_t peak = find_value(presize.text, (size_t)length, "heap_peak");
    if (peak == 0 || peak > PRESIZE_MAX) {
        complain("no plausible heap_peak line in ");
        return;
    }
    size_t page = prm_os_page_size();
    prm_arena *av = &prmi_state.main_arena;
    prm_lock_acquire(&av->lock);
    /* Grow with top_pad 0, so the heap becomes the profile's size, not that plus a pad. */
    size_t pad = params()->top_pad;
    params()->top_pad = 0;
    size_t have = av->system_bytes;
    if (peak > have + page)
        prmi_grow_heap(av, align_down((size_t)peak - have - page, PRM_ALIGN));
    params()->top_pad = pad;
    if (av->top != NULL) {
        /* Back top with pages now: one madvise instead of a fault per page later. */
        uintptr_t start = align_up((uintptr_t)av->top + PRM_CHUNK_HDR, page);
        uintptr_t end = align_down((uintptr_t)av->top + top_size(av), page);
        if (end > start && prm_os_populate((void *)start, end - start) != 0)
            prm_touch((void *)start, end - start);   /* kernels before 5.14 */
    }
    /* Trims give back only what lies above the profile's footprint plus the trim
     * threshold: a program whose top oscillates near its peak (cc1 does: a big buffer
     * allocated and freed at the top of the heap, 110 trims in a run) would otherwise
     * still trim and regrow above a floor at exactly the old peak, since the presized
     * heap's layout is not the recorded run's. */
    params()->heap_floor = av->system_bytes + params()->trim_threshold;
    presize.presized = av->system_bytes;
    prm_lock_release(&av->lock);
}
