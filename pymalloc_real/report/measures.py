"""What a trace says about a program's memory, computed with numpy over the packed
records so that a 10^7-operation trace takes seconds: live bytes after every operation
(and its peak), what is still live at the end (leaked), temporary allocations, requests
by size class, and the live-bytes series thinned to a few thousand points for charts.

Definitions (the report's legend repeats them):

* **live bytes**: the requested sizes of the objects allocated and not yet freed (a
  realloc changes its object's size);
* **leaked**: live at the end of the trace (the program never freed them);
* **temporary allocation**: an object freed before any other allocation (malloc,
  calloc, memalign or realloc) was made after it, heaptrack's definition;
* **size class**: a request's size rounded up to a power of two (the exit report's
  ``"<=N"`` buckets), counted by creating operations and reallocs.
"""


from dataclasses import dataclass, field
from typing import List

from ..trace.model import CALLOC, FREE, MALLOC, MEMALIGN, REALLOC

_OPS_DTYPE = [("op", "u1"), ("align", "u1"), ("thread", "<u2"), ("reserved", "<u4"),
              ("id", "<u8"), ("size", "<u8")]


@dataclass
class SizeClass:
    """Requests of at most ``limit`` bytes (and more than half of it)."""
    limit: int
    count: int
    bytes: int


@dataclass
class TraceMeasures:
    """A trace's memory in numbers (see the module's docstring)."""
    ops: int
    mallocs: int
    frees: int
    reallocs: int
    objects: int
    threads: int
    bytes_requested: int
    peak_live: int
    peak_live_op: int               # the op after which live bytes were at their peak
    leaked_bytes: int
    leaked_objects: int
    temporary: int                  # temporary allocations
    size_classes: List[SizeClass] = field(default_factory=list)
    series_op: List[int] = field(default_factory=list)      # thinned: op index
    series_live: List[int] = field(default_factory=list)    # the bucket's highest live

    @property
    def temporary_share(self):
        """Temporary allocations over all allocations."""
        return self.temporary / self.mallocs if self.mallocs else 0.0


def ops_array(trace):
    """The packed records as a numpy structured array (no copy)."""
    import numpy as np
    return np.frombuffer(trace.packed(), dtype=np.dtype(_OPS_DTYPE))


def live_after_each_op(ops):
    """Live bytes after every op (int64 array): each op adds its size minus the size its
    object had before (0 for a new object, and a free's size is 0). Objects never
    realloc'd take O(1) per op (a free takes back its creation's size); only the ops of
    realloc'd objects are sorted by object to find each one's size before."""
    import numpy as np
    n = len(ops)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ids = ops["id"].astype(np.int64)
    sizes = ops["size"].astype(np.int64)
    codes = ops["op"]
    creating = (codes == MALLOC) | (codes == CALLOC) | (codes == MEMALIGN)
    n_objects = int(ids.max()) + 1
    resized = np.zeros(n_objects, dtype=bool)
    resized[ids[codes == REALLOC]] = True
    created_size = np.zeros(n_objects, dtype=np.int64)
    created_size[ids[creating]] = sizes[creating]
    delta = np.where(creating, sizes, 0)
    plain_free = (codes == FREE) & ~resized[ids]
    delta[plain_free] = -created_size[ids[plain_free]]
    touched = np.flatnonzero(resized[ids])          # ops of realloc'd objects, in order
    if len(touched):
        order = touched[np.argsort(ids[touched], kind="stable")]
        sorted_ids, sorted_sizes = ids[order], sizes[order]
        before = np.empty(len(order), dtype=np.int64)
        before[0] = 0
        before[1:] = sorted_sizes[:-1]
        before[np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]])] = 0
        delta[order] = sorted_sizes - before
    return np.cumsum(delta)


def measure(trace, points=2000):
    """The :class:`TraceMeasures` of ``trace`` (a pymalloc_real.trace.Trace), with the
    live series thinned to at most ``points`` points (each the highest live bytes in
    its stretch of ops, so no peak is lost). Returns (measures, live array)."""
    import numpy as np
    ops = ops_array(trace)
    n = len(ops)
    codes = ops["op"]
    creating = (codes == MALLOC) | (codes == CALLOC) | (codes == MEMALIGN)
    is_free = codes == FREE
    is_realloc = codes == REALLOC
    live = live_after_each_op(ops)
    peak_at = int(np.argmax(live)) if n else 0
    sizes = ops["size"]
    ids = ops["id"]

    # Leaks: objects whose last op is not a free.
    n_objects = int(ids.max()) + 1 if n else 0
    freed = np.zeros(n_objects, dtype=bool)
    freed[ids[is_free]] = True
    made = np.zeros(n_objects, dtype=bool)
    made[ids[creating]] = True
    leaked_objects = int(np.count_nonzero(made & ~freed))

    # Temporaries: no allocation between an object's creation and its free.
    allocating = creating | is_realloc
    allocations_so_far = np.cumsum(allocating)
    created_at = np.zeros(n_objects, dtype=np.int64)
    created_at[ids[creating]] = np.flatnonzero(creating)
    free_at = np.flatnonzero(is_free)
    free_ids = ids[free_at]
    known = made[free_ids]
    temporary = int(np.count_nonzero(
        allocations_so_far[free_at[known]] == allocations_so_far[created_at[free_ids[known]]]))

    # Size classes: powers of two, by creating ops and reallocs.
    asked = sizes[allocating]
    classes = []
    if len(asked):
        exponent = np.ceil(np.log2(np.maximum(asked, 1).astype(np.float64))).astype(np.int64)
        counts = np.bincount(exponent)
        totals = np.bincount(exponent, weights=asked.astype(np.float64))
        classes = [SizeClass(1 << int(e), int(counts[e]), int(totals[e]))
                   for e in np.flatnonzero(counts)]

    series_op, series_live = _thin(live, points)
    measures = TraceMeasures(
        ops=n, mallocs=int(np.count_nonzero(creating)), frees=int(np.count_nonzero(is_free)),
        reallocs=int(np.count_nonzero(is_realloc)), objects=trace.n_objects,
        threads=trace.n_threads, bytes_requested=int(asked.sum(dtype=np.uint64)) if n else 0,
        peak_live=int(live[peak_at]) if n else 0, peak_live_op=peak_at + 1 if n else 0,
        leaked_bytes=int(live[-1]) if n else 0, leaked_objects=leaked_objects,
        temporary=temporary, size_classes=classes, series_op=series_op,
        series_live=series_live)
    return measures, live


def _thin(live, points):
    """(op indices, highest live in each stretch): at most ``points`` of them, the
    first point the empty heap before op 0."""
    import numpy as np
    n = len(live)
    if n <= points:
        return list(range(n + 1)), [0] + live.tolist()
    stretch = -(-n // points)
    padded = np.full(stretch * (-(-n // stretch)), np.iinfo(np.int64).min, dtype=np.int64)
    padded[:n] = live
    highest = padded.reshape(-1, stretch).max(axis=1)
    ends = np.minimum(np.arange(1, len(highest) + 1) * stretch, n)
    return [0] + ends.tolist(), [0] + highest.tolist()
