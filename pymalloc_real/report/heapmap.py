"""The heap as the allocator sees it, at any moment of a trace: the trace replayed through
our core (the cffi build, through the lab's replay loop) in a fresh interpreter, paused at
evenly spaced moments to walk its chunks, bins and segments.

The replay runs in a thread of its own, so that the interpreter's own mallocs during the
walks go to a glibc arena of that thread (mmapped), not to the break our main heap grows
from. At every one of ``samples`` pauses it notes the core's statistics (heap bytes,
mmapped bytes: the footprint over time); at every one of ``snapshots`` it also walks the
heap and reduces it to *units* (a power of two of bytes, at least 64): per unit, the
bytes held from the OS, in use (live chunks, headers and fence posts included), and in the
top chunk; the rest is free in a bin. Afterwards the units of every snapshot are laid end
to end (the gaps between segments left out) and grouped into at most ``cells`` cells, each
coded as one byte:

* 0 not held (beyond the break at that moment, or a segment not yet made),
* 1 mostly the top chunk,
* 2 + round(10 x the share in use of the rest): 2 all free ... 12 all in use.

Mapped chunks are listed beside (their sizes, in address order), and the program break
is marked when it falls in the map. A 10^7-operation trace gives 100 snapshots of 4,096
cells: 400 KiB before base64, whatever the heap's size.
"""


import os
import pickle
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Dict, List

from ..errors import PymallocError

SAMPLES = 1000
SNAPSHOTS = 100
CELLS = 4096
COLUMNS = 128
MAPPED_SHOWN = 64           # the largest mapped chunks drawn per snapshot

CODE_NOT_HELD, CODE_TOP, CODE_FREE, CODE_USED = 0, 1, 2, 12
FREE_PLACES = ("fast", "unsorted", "small", "large", "top")


class HeapMapError(PymallocError):
    """The replay behind the heap map failed."""


@dataclass
class Snapshot:
    """The heap after ``op`` operations, at full detail: per unit (absolute unit number
    ``units``), bytes held, in use and in top; the mapped chunks; bins by kind."""
    op: int
    units: object               # numpy int64
    held: object                # numpy uint32 per unit
    used: object
    top: object
    mapped_lengths: List[int]   # every mapped chunk's mapping, in address order
    free: Dict[str, int]        # bytes free per place (FREE_PLACES)
    heap_bytes: int             # held by heap segments (mallinfo2 arena)
    mapped_bytes: int           # in mapped chunks (hblkhd)
    in_use_bytes: int           # chunk sizes of live blocks
    brk: int


@dataclass
class HeapMap:
    """What the report draws: the coded frames (``rows`` x ``columns`` bytes each), and
    per frame the op, the break's cell (-1: not in the map), the mapped chunks, where
    the free bytes are; and the footprint series at every sample."""
    unit: int
    bytes_per_cell: int
    columns: int
    rows: int
    ops: List[int] = field(default_factory=list)
    frames: List[bytes] = field(default_factory=list)
    break_cells: List[int] = field(default_factory=list)
    mapped: List[List[int]] = field(default_factory=list)
    mapped_count: List[int] = field(default_factory=list)
    free: Dict[str, List[int]] = field(default_factory=dict)
    heap_bytes: List[int] = field(default_factory=list)
    mapped_bytes: List[int] = field(default_factory=list)
    in_use_bytes: List[int] = field(default_factory=list)
    series_op: List[int] = field(default_factory=list)
    series_heap: List[int] = field(default_factory=list)
    series_mapped: List[int] = field(default_factory=list)
    segments: int = 0           # separate address ranges laid end to end


def unit_for(peak_live):
    """A unit (a power of two, at least 64 bytes: a small heap is drawn almost chunk by
    chunk) that keeps a heap of twice the peak live bytes to about 64 Ki units per
    snapshot."""
    unit = 64
    while unit * 65536 < 2 * peak_live:
        unit *= 2
    return unit


def build(trace, peak_live, peak_op=None, samples=SAMPLES, snapshots=SNAPSHOTS, cells=CELLS):
    """Replay ``trace`` through our core in a fresh interpreter and return its
    :class:`HeapMap`; ``peak_op`` (the op after which live bytes peak) gets a snapshot
    of its own."""
    n_ops = len(trace)
    if n_ops == 0:
        raise HeapMapError("the trace is empty: there is no heap to draw")
    unit = unit_for(peak_live)
    with tempfile.NamedTemporaryFile(prefix="pymalloc-real-report-", suffix=".ops") as ops:
        ops.write(trace.packed())
        ops.flush()
        request = pickle.dumps((ops.name, n_ops, trace.n_objects, unit, samples, snapshots,
                                peak_op))
        proc = subprocess.run(
            [sys.executable, "-c", "from pymalloc_real.report.heapmap import _child; _child()"],
            input=request, capture_output=True)
    if proc.returncode != 0:
        raise HeapMapError(f"replaying the trace through pymalloc_real failed (exit "
                           f"{proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    snaps, series = pickle.loads(proc.stdout)
    return assemble(snaps, series, unit, cells)


# ---- the fresh interpreter's side ----------------------------------------------------------

def _child():
    """Request on stdin (pickled), (snapshots, series) on stdout (pickled)."""
    path, n_ops, n_objects, unit, samples, snapshots, peak_op = \
        pickle.loads(sys.stdin.buffer.read())
    from ..lab.packing import _Packed
    with open(path, "rb") as f:
        packed = _Packed(f.read(), n_ops, n_objects)
    box = []

    def run():
        try:
            box.append(_replay(packed, unit, samples, snapshots, peak_op))
        except BaseException as error:      # reported through the exit status
            box.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if not box or isinstance(box[0], BaseException):
        print(f"heap map replay failed: {box[0] if box else 'no result'!r}", file=sys.stderr)
        raise SystemExit(1)
    sys.stdout.buffer.write(pickle.dumps(box[0]))


def _replay(packed, unit, samples, snapshots, peak_op):
    from .._core import ffi, lib
    from ..lab.policy import Policy
    walker = _Walker(ffi, lib, unit)
    every = max(1, packed.n_ops // samples)
    snapshot_every = max(1, samples // snapshots)
    stats = ffi.new("prm_stats *")
    series = ([], [], [])
    snaps = []

    def visit(op):
        if series[0] and series[0][-1] == op:
            return                          # the last op sampled twice
        lib.prm_get_stats(stats)
        series[0].append(op)
        series[1].append(stats.arena)
        series[2].append(stats.hblkhd)
        if (len(series[0]) - 1) % snapshot_every == 0 or op in (packed.n_ops, peak_op):
            snaps.append(walker.snapshot(op))

    with Policy("ptmalloc") as policy:
        policy.replay(packed, verify=False, sample_every=every, free_remaining=True,
                      visit=visit, sample_at=peak_op or None)
    return snaps, series


class _Walker:
    """Walks the core's chunks, bins and segments into numpy arrays (buffers reused)."""

    def __init__(self, ffi, lib, unit):
        import numpy as np
        self.np, self.ffi, self.lib, self.unit = np, ffi, lib, unit
        self.buffers = {}
        self.dtypes = {name: self._dtype(name) for name in
                       ("prm_chunk_info", "prm_bin_entry", "prm_segment_info")}

    def _dtype(self, ctype):
        formats = {"uintptr_t": "<u8", "size_t": "<u8", "uint32_t": "<u4", "int32_t": "<i4"}
        fields = self.ffi.typeof(ctype).fields
        return self.np.dtype({"names": [name for name, _ in fields],
                              "formats": [formats[f.type.cname] for _, f in fields],
                              "offsets": [f.offset for _, f in fields],
                              "itemsize": self.ffi.sizeof(ctype)})

    def _walk(self, function, ctype):
        while True:
            buffer = self.buffers.get(ctype)
            if buffer is None:
                buffer = self.buffers[ctype] = self.ffi.new(f"{ctype}[]", 1024)
            capacity = len(buffer)
            count = function(buffer, capacity)
            if count < 0:
                raise HeapMapError("the heap could not be walked (prm_check says why)")
            if count <= capacity:
                # A view of the buffer, no copy: a snapshot is done with it before the
                # next walk of the same kind overwrites it.
                raw = self.ffi.buffer(buffer, count * self.ffi.sizeof(ctype))
                return self.np.frombuffer(raw, dtype=self.dtypes[ctype])
            self.buffers[ctype] = self.ffi.new(f"{ctype}[]", count + count // 4 + 64)

    def snapshot(self, op):
        np, lib = self.np, self.lib
        chunks = self._walk(lib.prm_walk_chunks, "prm_chunk_info")
        bins = self._walk(lib.prm_walk_bins, "prm_bin_entry")
        segments = self._walk(lib.prm_walk_segments, "prm_segment_info")
        stats = self.ffi.new("prm_stats *")
        lib.prm_get_stats(stats)
        kinds = chunks["kind"]
        fast = bins["address"][bins["kind"] == lib.PRM_BIN_FAST]
        heap = chunks[kinds != lib.PRM_KIND_MMAPPED]
        in_use = ((heap["tagged_in_use"] != 0) & (heap["kind"] == lib.PRM_KIND_CHUNK)
                  & ~np.isin(heap["address"], fast)) | (heap["kind"] == lib.PRM_KIND_FENCE)
        top = heap[heap["kind"] == lib.PRM_KIND_TOP]
        units, held, used, top_bytes = self._units(segments, heap[in_use], top)
        mapped = chunks[kinds == lib.PRM_KIND_MMAPPED]
        mapped = mapped[np.argsort(mapped["mapping"])]
        free = {name: int(bins["size"][bins["kind"] == code].sum()) for name, code in
                (("fast", lib.PRM_BIN_FAST), ("unsorted", lib.PRM_BIN_UNSORTED),
                 ("small", lib.PRM_BIN_SMALL), ("large", lib.PRM_BIN_LARGE))}
        free["top"] = int(top["size"].sum())
        return Snapshot(op, units, held, used, top_bytes,
                        mapped["mapping_length"].tolist(), free, stats.arena, stats.hblkhd,
                        stats.in_use_bytes, lib.prm_current_break())

    def _units(self, segments, used, top):
        np, unit = self.np, self.unit
        if not len(segments):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.uint32), empty.astype(np.uint32), empty.astype(np.uint32)
        order = np.argsort(segments["start"])
        starts = segments["start"][order].astype(np.int64)
        ends = segments["end"][order].astype(np.int64)
        first, last = starts // unit, -(-ends // unit)
        units = np.concatenate([np.arange(a, b) for a, b in zip(first, last)])
        # Disjoint segments in address order: units ascend, but two segments may share
        # the unit where one ends and the next begins.
        units = units[np.concatenate([[True], np.diff(units) > 0])]
        low, high = units * unit, units * unit + unit

        def per_unit(begin, end):
            begin, end = begin.astype(np.int64), end.astype(np.int64)
            if len(begin) > 1 and np.any(begin[1:] < begin[:-1]):   # walks are in order
                order = np.argsort(begin)                            # within an arena
                begin, end = begin[order], end[order]
            return (_covered_below(begin, end, high) - _covered_below(begin, end, low)) \
                .astype(np.uint32)

        held = per_unit(starts, ends)
        in_use = per_unit(used["address"], used["address"] + used["size"])
        in_top = per_unit(top["address"], top["address"] + top["size"])
        return units, held, in_use, in_top


def _covered_below(starts, ends, points):
    """Bytes of the disjoint intervals [starts, ends) (sorted) that lie below each point."""
    import numpy as np
    if not len(starts):
        return np.zeros(len(points), dtype=np.int64)
    lengths = ends - starts
    before = np.concatenate([[0], np.cumsum(lengths)])
    index = np.searchsorted(starts, points, side="right") - 1
    safe = np.maximum(index, 0)
    inside = np.clip(points - starts[safe], 0, lengths[safe])
    return np.where(index >= 0, before[safe] + inside, 0)


# ---- from snapshots to cells ------------------------------------------------------------------

def assemble(snaps, series, unit, cells=CELLS, columns=COLUMNS):
    """The :class:`HeapMap` of the child's snapshots: every snapshot's units laid on one
    axis (the union of all units held at any snapshot, gaps left out), grouped into at
    most ``cells`` cells."""
    import numpy as np
    every_unit = np.unique(np.concatenate([s.units for s in snaps])) if snaps else \
        np.zeros(0, dtype=np.int64)
    per_cell = max(1, -(-len(every_unit) // cells))
    n_cells = max(1, -(-len(every_unit) // per_cell))
    columns = min(columns, n_cells)
    rows = -(-n_cells // columns)
    gaps = int(np.count_nonzero(np.diff(every_unit) > 1)) if len(every_unit) else 0
    out = HeapMap(unit=unit, bytes_per_cell=per_cell * unit, columns=columns, rows=rows,
                  free={name: [] for name in FREE_PLACES}, segments=gaps + 1 if snaps else 0)
    out.series_op, out.series_heap, out.series_mapped = (list(x) for x in series)
    for snap in snaps:
        cell = np.searchsorted(every_unit, snap.units) // per_cell
        size = rows * columns

        def total(values):
            return np.bincount(cell, weights=values.astype(np.float64), minlength=size)

        held, used, top = total(snap.held), total(snap.used), total(snap.top)
        rest = held - top
        share = np.divide(used, rest, out=np.zeros(size), where=rest > 0)
        codes = np.where(held <= 0, CODE_NOT_HELD,
                         np.where(top * 2 > held, CODE_TOP,
                                  CODE_FREE + np.rint(np.clip(share, 0, 1) * 10)))
        out.ops.append(snap.op)
        out.frames.append(codes.astype(np.uint8).tobytes())
        out.break_cells.append(_cell_of(snap.brk - 1, every_unit, unit, per_cell))
        out.mapped.append(sorted(snap.mapped_lengths, reverse=True)[:MAPPED_SHOWN]
                          if len(snap.mapped_lengths) > MAPPED_SHOWN else snap.mapped_lengths)
        out.mapped_count.append(len(snap.mapped_lengths))
        for name in FREE_PLACES:
            out.free[name].append(snap.free[name])
        out.heap_bytes.append(snap.heap_bytes)
        out.mapped_bytes.append(snap.mapped_bytes)
        out.in_use_bytes.append(snap.in_use_bytes)
    return out


def _cell_of(address, every_unit, unit, per_cell):
    import numpy as np
    wanted = address // unit
    at = int(np.searchsorted(every_unit, wanted))
    if at < len(every_unit) and every_unit[at] == wanted:
        return at // per_cell
    return -1
