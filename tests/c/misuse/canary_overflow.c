/* misuse: a one-byte overflow that stays inside the chunk (100 bytes asked, more usable),
 * which only the canary sees.
 * options: canary=1
 * expect: abort "free(): canary overwritten" */
#include "misuse.h"

int main(void)
{
    char *p = malloc(100);
    memset(opaque(p), 'A', 100 + 1);    /* one byte too many */
    free(p);
    return unnoticed();
}
