/* fuzz_reset.c - gives the fuzz target a fresh allocator before every input, so each
 * input is judged alone and a corrupted arena (which refuses further work by design)
 * does not poison the inputs after it. Test-only: it reaches into the core's internal
 * structures and is never built into the library or the Python module.
 *
 * It relies on the fuzz binary being the only user of the break (under ASan the
 * process's malloc is ASan's, which uses mmap) and on a single thread. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hardened.h"
#include "prm.h"

#include "fuzz_reset.h"

static void *initial_break;
static prm_params default_params;

void prm_fuzz_reset_init(void)
{
    prm_free(prm_malloc(1));            /* initialise the core */
    prm_malloc_trim(0);
    default_params = prmi_state.params;
    initial_break = sbrk(0);
}

static void forget_mmapped_chunks(void)
{
    prm_mmap_registry *reg = &prmi_state.mmapped;
    prm_mmap_header *h = reg->list.next;
    while (!reg->broken && h != &reg->list) {
        prm_mmap_header *next = h->next;
        prmi_pagemap_mark((uintptr_t)h, (uintptr_t)h->chunk + 1, PRM_OWNER_NONE);
        munmap(h, h->length);
        h = next;
    }
    for (unsigned i = 0; i < PRM_UNMAPPED_REMEMBERED; i++)
        if (reg->tombstones[i] != 0)
            munmap((void *)reg->tombstones[i], (size_t)sysconf(_SC_PAGESIZE));
    memset(reg, 0, sizeof *reg);
    reg->list.next = reg->list.prev = &reg->list;
}

static void forget_other_arenas(void)
{
    prm_arena *av = prmi_state.main_arena.next;
    while (av != NULL) {
        prm_arena *next = av->next;
        prm_segment *seg = av->segments;
        while (seg != NULL) {                /* the arena itself lies in its first heap */
            prm_segment *older = seg->older;
            prmi_pagemap_mark((uintptr_t)seg, (uintptr_t)seg + PRM_HEAP_MAX, PRM_OWNER_NONE);
            munmap(seg, PRM_HEAP_MAX);
            seg = older;
        }
        av = next;
    }
    prmi_state.main_arena.next = NULL;
    prmi_state.arena_count = 1;
    prmi_state.next_to_reuse = NULL;
}

static void forget_main_arena(void)
{
    prm_arena *main = &prmi_state.main_arena;
    for (prm_segment *seg = main->segments; seg != NULL; seg = seg->older) {
        prmi_pagemap_mark(seg->raw_start, seg->end, PRM_OWNER_NONE);
        if (seg->kind == PRM_SEG_MMAP)
            munmap((void *)seg->raw_start, seg->end - seg->raw_start);
    }
    if (brk(initial_break) != 0)
        _exit(99);
    memset(main, 0, sizeof *main);
    prmi_arena_init(main, 0);
    main->initialized = 1;
}

void prm_fuzz_reset(void)
{
    forget_mmapped_chunks();
    forget_other_arenas();
    forget_main_arena();
    prmi_hardened_forget();
    prmi_state.params = default_params;
    prmi_self.arena = NULL;
    prmi_self.tcache = PRM_TCACHE_NONE;
    prm_error ignored;
    prm_take_error(&ignored);
}
