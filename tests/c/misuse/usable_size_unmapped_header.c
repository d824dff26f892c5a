/* misuse: malloc_usable_size of a pointer at the very start of a mapping of the
 * program's own, so the 16 bytes where a chunk header would sit are not mapped: reading
 * them would fault. The pointer must be looked up, and refused, before any header is read.
 * expect: abort "malloc_usable_size(): invalid pointer" */
#include "misuse.h"

#include <malloc.h>
#include <sys/mman.h>

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *area = mmap(NULL, (size_t)page * 3, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED)
        return 4;
    if (munmap(area, (size_t)page) != 0)      /* the page before the "block": gone */
        return 4;
    size_t usable = malloc_usable_size(opaque(area + page));
    (void)usable;
    return unnoticed();
}
