"""pymalloc_real: a real ptmalloc-style allocator for Linux, driven from Python.

The C core (``pymalloc_real._core``, built with cffi) obtains memory with genuine
brk and mmap system calls and carves it into chunks with boundary tags, fast,
unsorted, small and large bins, a top chunk, an mmap threshold and trimming, as
glibc's malloc does. It never replaces the interpreter's own malloc.

    >>> import pymalloc_real as prm
    >>> b = prm.malloc(30 * 1024)
    >>> b.write(b"hello"); b.read(5)
    5
    b'hello'
    >>> prm.free(b)
"""
from .errors import (DoubleFree, HeapCorruption, InvalidFree, OutOfBounds,
                     PymallocError, UseAfterFree)
from .heap import (M_ARENA_MAX, M_ARENA_TEST, M_CANARY, M_CHECK_ACTION, M_HARDENED, M_MMAP_MAX,
                   M_MMAP_THRESHOLD, M_MXFAST, M_PERTURB, M_TOP_PAD, M_TRIM_THRESHOLD,
                   Block, calloc, free, malloc, malloc_trim, malloc_usable_size, mallopt,
                   memalign, realloc)
from .introspect import (Arena, BinEntry, Bins, Chunk, HeapStats, Ledger, Segment, arenas,
                         bins, check, chunk_of, chunks, ledger, segments, stats)
from .kernel.procfs import (Layout, MapRegion, PageFrames, PhysicalPage, Tracking, brk, faults,
                     faults_from_stat, is_mapped, mapped_pages, maps, no_huge_pages, page_size,
                     physical_pages, process_layout, region_of, residency, thp_setting,
                     totals_by_kind, track)
from .heapview import HeapContext, HeapView, HeapViewError, heap_view, show
from .serve import ServeRefused, Serving, in_our_heap, serve_python

from . import preload      # preload.run / preload.compare: programs on any allocator
from .live import attach   # another running process's allocator, seen from outside
from .report import report  # report(cmd) -> Report: a program's memory as one HTML page

__version__ = "0.1.0"

__all__ = [
    "malloc", "calloc", "realloc", "memalign", "free", "Block",
    "mallopt", "malloc_trim", "malloc_usable_size", "M_MXFAST", "M_TRIM_THRESHOLD", "M_TOP_PAD",
    "M_MMAP_THRESHOLD", "M_MMAP_MAX", "M_CHECK_ACTION", "M_PERTURB", "M_ARENA_TEST",
    "M_ARENA_MAX", "M_CANARY", "M_HARDENED",
    "stats", "chunks", "chunk_of", "bins", "arenas", "segments", "check", "ledger",
    "HeapStats", "Chunk", "BinEntry", "Bins", "Arena", "Segment", "Ledger",
    "brk", "maps", "region_of", "totals_by_kind", "faults", "faults_from_stat", "page_size",
    "residency", "is_mapped", "mapped_pages", "physical_pages", "no_huge_pages", "thp_setting",
    "process_layout", "track", "MapRegion", "PhysicalPage", "PageFrames", "Layout", "Tracking",
    "show", "heap_view", "HeapView", "HeapContext", "HeapViewError",
    "serve_python", "Serving", "ServeRefused", "in_our_heap",
    "PymallocError", "HeapCorruption", "InvalidFree", "DoubleFree", "UseAfterFree",
    "OutOfBounds", "attach", "report",
]
