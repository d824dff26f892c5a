/* faults.c - hardened mode's named traps. Hardened mode closes memory so that a misuse
 * faults at the access instead of going on silently: a zero-size block, a mapped block
 * waiting in the quarantine (its pages made inaccessible), the guard page after every
 * mapped block. When such an access faults, this handler names it in one line, glibc
 * style ("pymalloc_real: segfault: write after free: byte 65537 of the freed
 * 262144-byte block ..."), and hands the signal back to the action it replaced, so the
 * program still dies of the SIGSEGV (or reaches its own handler) exactly as before. A
 * fault in memory that is not ours is handed back without a word.
 *
 * Everything here runs in a signal handler: no lock is taken (the structures are read
 * as they stand, see hardened.c), nothing is allocated, the report is one write(2). */
#include "hardened.h"
#include "os.h"
#include "pagemap.h"

/* How far back from a fault the map is searched for the mapped block whose guard page
 * it may be: the largest block we would name is 4 GiB. */
#define GUARD_SEARCH_PAGES ((size_t)1 << 20)

static const char *access_name(int access, const char *read, const char *write, const char *any)
{
    return access == PRM_OS_FAULT_READ ? read : access == PRM_OS_FAULT_WRITE ? write : any;
}

static int name_zero_block(uintptr_t address, int access)
{
    uintptr_t block;
    if (!prmi_zero_block_at(address, &block))
        return 0;
    prmi_report_fault(access_name(access, "segfault: read of a zero-size block", "segfault: write of a zero-size block",
                                  "segfault: access to a zero-size block"),
                      "malloc(0) returned this block, which has no bytes (hardened mode makes it trap)",
                      (const void *)block);
    return 1;
}

static int name_quarantined(uintptr_t address, int access)
{
    uintptr_t mem;
    size_t closed;
    if (!prmi_quarantined_mapped_at(address, &mem, &closed))
        return 0;
    char detail[160];
    prmi_text t = { detail, sizeof detail, 0 };
    prmi_text_str(&t, "byte ");
    prmi_text_dec(&t, address - mem);
    prmi_text_str(&t, " of a freed block, which waits in the quarantine with its ");
    prmi_text_dec(&t, closed);
    prmi_text_str(&t, " bytes closed");
    prmi_report_fault(access_name(access, "segfault: read after free", "segfault: write after free",
                                  "segfault: access after free"),
                      detail, (const void *)mem);
    return 1;
}

/* The mapped block whose guard page holds address: its mapping's header is found by the
 * ownership map (the pages from a mapping's start to its chunk's header are marked, the
 * rest are not; a heap page on the way means there is none), then must agree. */
static int name_guard_page(uintptr_t address, int access)
{
    size_t page = prm_os_page_size();
    uintptr_t at = address & ~(uintptr_t)(page - 1);
    size_t steps = 0;
    while (steps++ < GUARD_SEARCH_PAGES && at >= page && prmi_owner_of(at - page) == PRM_OWNER_NONE)
        at -= page;
    if (at < page || prmi_owner_of(at - page) != PRM_OWNER_MAPPED)
        return 0;
    at -= page;   /* the page of the chunk's header; the mapping starts at the run's first */
    while (at >= page && prmi_owner_of(at - page) == PRM_OWNER_MAPPED)
        at -= page;
    const prm_mmap_header *h = (const prm_mmap_header *)at;
    uintptr_t chunk = (uintptr_t)h->chunk;
    size_t length = h->length;
    if (chunk <= at || !aligned_ok(chunk) || (length & (page - 1)) != 0 || length < 2 * page ||
        address < at + length - page || address >= at + length)
        return 0;
    void *mem = chunk2mem((prm_chunk *)chunk);
    size_t size = params()->canary ? prmi_canary_requested(mem) : 0;
    if (size == 0)
        size = chunk_size((prm_chunk *)chunk) - PRM_CHUNK_HDR;
    char detail[192];
    prmi_text t = { detail, sizeof detail, 0 };
    prmi_text_str(&t, "byte ");
    prmi_text_dec(&t, address - (uintptr_t)mem);
    prmi_text_str(&t, " of the ");
    prmi_text_dec(&t, size);
    prmi_text_str(&t, "-byte block (");
    prmi_text_dec(&t, address - (uintptr_t)mem - size);
    prmi_text_str(&t, " bytes past its end) lies in the guard page after it");
    prmi_report_fault(access_name(access, "segfault: read past the end of a block",
                                  "segfault: write past the end of a block", "segfault: access past the end of a block"),
                      detail, mem);
    return 1;
}

static void on_fault(int signal, void *address, int access)
{
    uintptr_t a = (uintptr_t)address;
    if (!name_zero_block(a, access) && !name_quarantined(a, access))
        name_guard_page(a, access);
    prm_os_release_fault(signal);   /* the access runs again and meets the old action */
}

void prmi_faults_install(void)
{
    static int installed;
    if (__atomic_exchange_n(&installed, 1, __ATOMIC_ACQ_REL))
        return;
    if (prm_os_catch_faults(on_fault) != 0)
        __atomic_store_n(&installed, 0, __ATOMIC_RELEASE);   /* traps stay unnamed */
}
