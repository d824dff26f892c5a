/* publish.c - the live view's directory: one exported, read-only-after-load symbol that
 * tells a reader in another process (pymalloc_real/live/) where the allocator's
 * structures are and how they are laid out, so `pymalloc-real top PID` and `heap PID`
 * can copy them with process_vm_readv without a debugger and without stopping the
 * process.
 *
 * Nothing here runs on an allocation path: the directory is constant data plus the
 * addresses the loader fills in. The reader copies what a lock guards between two
 * reads of that lock's sequence counter (glue.h, prm_lock.seq) and retries when they
 * differ or are odd, so the process never waits for the reader.
 *
 * The layout travels as a table of (name, offset, size) rows computed by the compiler
 * ("prm_arena.top", "prm_segment.end", ...; constants have size 0 and their value as
 * the offset), so the reader never hard-codes a struct layout and a rewrite of the
 * core that moves fields keeps working as long as the names stay. */
#include <stddef.h>

#include "internal.h"
#include "prm.h"

#define FIELD(type, member) { #type "." #member, (uint32_t)offsetof(type, member), \
                              (uint32_t)sizeof(((type *)0)->member) }
#define SIZE(type)          { #type, 0, (uint32_t)sizeof(type) }
#define CONSTANT(name)      { "const." #name, (uint32_t)(name), 0 }

static const prm_live_field live_fields[] = {
    SIZE(prm_state),
    FIELD(prm_state, params), FIELD(prm_state, main_arena), FIELD(prm_state, mmapped),
    FIELD(prm_state, arena_count), FIELD(prm_state, tcache_raises),
    FIELD(prm_state, tcache_drains), FIELD(prm_state, tcache_fills),
    FIELD(prm_state, pagemap_leaves), CONSTANT(PRM_PAGEMAP_LEAF),
    FIELD(prm_params, max_fast), FIELD(prm_params, trim_threshold), FIELD(prm_params, top_pad),
    FIELD(prm_params, mmap_threshold), FIELD(prm_params, n_mmaps_max),
    FIELD(prm_params, no_dyn_threshold), FIELD(prm_params, perturb_byte),
    FIELD(prm_params, check_action), FIELD(prm_params, canary), FIELD(prm_params, arena_test),
    FIELD(prm_params, arena_max), FIELD(prm_params, tcache_count), FIELD(prm_params, tcache_grow),
    SIZE(prm_lock), FIELD(prm_lock, word), FIELD(prm_lock, seq),
    SIZE(prm_arena),
    FIELD(prm_arena, lock), FIELD(prm_arena, index), FIELD(prm_arena, corrupt),
    FIELD(prm_arena, abandoned), FIELD(prm_arena, attached_threads), FIELD(prm_arena, next),
    FIELD(prm_arena, remote_head), FIELD(prm_arena, remote_frees), FIELD(prm_arena, fastbins),
    FIELD(prm_arena, top), FIELD(prm_arena, last_remainder), FIELD(prm_arena, bins),
    FIELD(prm_arena, segments), FIELD(prm_arena, segment_count),
    FIELD(prm_arena, system_bytes), FIELD(prm_arena, max_system_bytes),
    FIELD(prm_arena, in_use_bytes), FIELD(prm_arena, in_use_chunks), FIELD(prm_arena, trims),
    FIELD(prm_arena, consolidations), FIELD(prm_arena, segments_opened),
    FIELD(prm_arena, discards),
    SIZE(prm_segment),
    FIELD(prm_segment, older), FIELD(prm_segment, raw_start), FIELD(prm_segment, end),
    FIELD(prm_segment, first), FIELD(prm_segment, kind), FIELD(prm_segment, serial),
    SIZE(prm_mmap_registry),
    FIELD(prm_mmap_registry, lock), FIELD(prm_mmap_registry, broken),
    FIELD(prm_mmap_registry, list), FIELD(prm_mmap_registry, count),
    FIELD(prm_mmap_registry, max_count), FIELD(prm_mmap_registry, mapped_bytes),
    FIELD(prm_mmap_registry, max_mapped_bytes), FIELD(prm_mmap_registry, chunk_bytes),
    SIZE(prm_mmap_header),
    FIELD(prm_mmap_header, next), FIELD(prm_mmap_header, length), FIELD(prm_mmap_header, chunk),
    SIZE(prm_chunk),
    FIELD(prm_chunk, prev_size), FIELD(prm_chunk, size), FIELD(prm_chunk, fd),
    FIELD(prm_chunk, bk),
    SIZE(prm_os_counters),
    FIELD(prm_os_counters, brk_reads), FIELD(prm_os_counters, brk_moves),
    FIELD(prm_os_counters, brk_failures), FIELD(prm_os_counters, mmap_calls),
    FIELD(prm_os_counters, mmap_failures), FIELD(prm_os_counters, munmap_calls),
    FIELD(prm_os_counters, mremap_calls), FIELD(prm_os_counters, mremap_failures),
    FIELD(prm_os_counters, discard_calls), FIELD(prm_os_counters, mincore_calls),
    FIELD(prm_os_counters, tombstone_calls), FIELD(prm_os_counters, brk_bytes_grown),
    FIELD(prm_os_counters, brk_bytes_shrunk), FIELD(prm_os_counters, mmap_bytes),
    FIELD(prm_os_counters, munmap_bytes), FIELD(prm_os_counters, discard_bytes),
    FIELD(prm_os_counters, mappings_named), FIELD(prm_os_counters, naming_refused),
    CONSTANT(PRM_NFASTBINS), CONSTANT(PRM_NBINS), CONSTANT(PRM_UNSORTED_BIN),
    CONSTANT(PRM_FIRST_LARGE_BIN), CONSTANT(PRM_LAST_BIN), CONSTANT(PRM_FENCE_SIZE),
    CONSTANT(PRM_MINSIZE), CONSTANT(PRM_REMOTE_FREES), CONSTANT(PRM_RECOVERABLE),
    CONSTANT(PRM_HARDENING),
};

/* The directory. Exported as `pymalloc_real_live` from both builds (the LD_PRELOAD
 * library and the Python extension), found by the reader in the library's dynamic symbol
 * table. The code here writes it through a hidden name: a Python process running on the
 * LD_PRELOAD library that imports the extension has both, and a write through the
 * exported name would reach the first one loaded, the library's. */
__attribute__((used)) PRM_INTERNAL prm_live_directory prmi_live_directory = {
    .magic = PRM_LIVE_MAGIC,
    .version = PRM_LIVE_VERSION,
    .field_size = sizeof(prm_live_field),
    .field_count = sizeof live_fields / sizeof live_fields[0],
    .fields = live_fields,
    .state = &prmi_state,
    .report = NULL,
    .report_fields = NULL,
    .report_field_count = 0,
};
extern prm_live_directory pymalloc_real_live
    __attribute__((alias("prmi_live_directory"), visibility("default")));

/* The os counters live in os.c, which includes nothing of ours: ask for the address. */
static __attribute__((constructor)) void publish_counters(void)
{
    prmi_live_directory.os_counters = prm_os_counters_address();
}

void prmi_publish_report(const void *report, const prm_live_field *fields, uint32_t count)
{
    prmi_live_directory.report_fields = fields;
    prmi_live_directory.report_field_count = count;
    __atomic_store_n(&prmi_live_directory.report, report, __ATOMIC_RELEASE);
}
