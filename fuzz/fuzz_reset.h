/* fuzz_reset.h - a fresh allocator for every fuzz input (see fuzz_reset.c). */
#ifndef PRM_FUZZ_RESET_H
#define PRM_FUZZ_RESET_H

void prm_fuzz_reset_init(void);     /* once, before the first input */
void prm_fuzz_reset(void);          /* before every input */

#endif
