"""The kernel views: what the kernel says about this process's memory.

``procfs`` reads /proc/self/maps, the program break, page faults, mincore residency and
pagemap frames; ``space`` folds an address space into bands (stack, mappings, heap,
program) for people. This wing may use the core API (``pymalloc_real.introspect``, to
name our own parts of a mapping) and nothing else of the package.
"""
