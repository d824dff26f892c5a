/* misuse: calloc whose count x size does not fit a size_t.
 * expect: exit 0 (NULL with errno ENOMEM, as C and glibc say) */
#include "misuse.h"

int main(void)
{
    errno = 0;
    void *p = calloc(opaque((void *)(SIZE_MAX / 2)) ? SIZE_MAX / 2 : 1, 4);
    if (p != NULL || errno != ENOMEM) {
        fprintf(stderr, "calloc overflow: p=%p errno=%d\n", p, errno);
        return 1;
    }
    return 0;
}
