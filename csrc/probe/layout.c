/* layout.c - a probe of the process layout for the demo (seed 001's first program):
 * the address of a function (text), an initialised global (data), an uninitialised
 * global (bss), the program break (heap), a local variable (stack) and a fresh
 * anonymous mapping. Not part of the allocator; the two globals below exist only to
 * have their addresses taken. */
#include "prm.h"
#include "os.h"

int prm_layout_initialised_global = 42;
int prm_layout_uninitialised_global;

int prm_process_layout(prm_layout *out)
{
    volatile int local = 0;
    size_t page = prm_os_page_size();
    void *mapping = prm_os_mmap(page);
    if (mapping == NULL)
        return -1;
    out->text = (uintptr_t)&prm_process_layout;
    out->data = (uintptr_t)&prm_layout_initialised_global;
    out->bss = (uintptr_t)&prm_layout_uninitialised_global;
    out->heap_break = prm_os_brk_current();
    out->stack = (uintptr_t)&local;
    out->mapping = (uintptr_t)mapping;
    out->mapping_length = page;
    return 0;
}

int prm_process_layout_release(prm_layout *layout)
{
    int rc = prm_os_munmap((void *)layout->mapping, layout->mapping_length);
    layout->mapping = 0;
    return rc;
}
