/* memory error: a fast-bin block (the thread cache full) written after it was freed,
 * then allocated again with calloc (which skips the cache).
 * default: abort "malloc(): fastbin link corrupted"
 * hardened: abort at exit "free(): write after free detected" */
#include "memerror.h"
int main(void)
{
    char *p = opaque(malloc(40));
    fill_thread_cache(40);
    free(p);
    memset(opaque(p), 0, 16);
    opaque(calloc(1, 40));
    opaque(calloc(1, 40));
    return unnoticed();
}
