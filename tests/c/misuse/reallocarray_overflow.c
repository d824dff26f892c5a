/* misuse: reallocarray whose count x size does not fit a size_t.
 * expect: exit 0 (NULL with errno ENOMEM, and the old block intact and still ours) */
#include "misuse.h"

int main(void)
{
    char *p = malloc(100);
    memset(p, 'x', 100);
    errno = 0;
    void *q = reallocarray(p, opaque((void *)(SIZE_MAX / 2)) ? SIZE_MAX / 2 : 1, 4);
    if (q != NULL || errno != ENOMEM) {
        fprintf(stderr, "reallocarray overflow: q=%p errno=%d\n", q, errno);
        return 1;
    }
    for (int i = 0; i < 100; i++)
        if (p[i] != 'x')
            return 2;
    free(p);
    return 0;
}
