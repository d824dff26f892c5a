/* owner.h - "is this pointer ours?", asked by the interpreter's allocator router
 * (csrc/python/serve.c) for every block the interpreter frees or resizes. Compiled into
 * the cffi module only; pymalloc_real/_build.py hands this header to cffi. */
#ifndef PRM_OWNER_H
#define PRM_OWNER_H

/* 1 if mem is a pointer into a heap segment or a mapped chunk of ours (the ownership
 * map's answer for its chunk header, two loads, no lock), 0 otherwise (NULL included).
 * It says whose memory it is, not that the block is live: that is free's job. */
int prm_owns(const void *mem);

#endif
