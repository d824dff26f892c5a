"""The address-space diagram: this process's /proc/self/maps drawn as a few bands, high
addresses first, with marks, our heap's parts and the program break noted where they lie;
and size_text, bytes in the seeds' units.
"""
import os
from collections import Counter
from dataclasses import dataclass
from typing import List, Tuple

from . import procfs
from ..reprs import readable

__all__ = ["Band", "address_space", "size_text", "GAP"]

KiB = 1024
MiB = 1024 * KiB

# Unmapped space at least this large is drawn as a gap of its own in the diagram.
GAP = 1 << 30
# The diagram shows the user half of the address space; above it only the kernel's
# fixed vsyscall page can appear in /proc/self/maps.
_KERNEL_HALF = 1 << 63


@readable
@dataclass(frozen=True)
class Band:
    """One line of the address-space diagram: a region of /proc/self/maps, a run of
    neighbouring regions of no interest drawn as one, or a large unmapped gap."""
    start: int
    end: int
    area: str           # "stack" (the stack and above), "mapping" (between heap and
                        # stack), "heap", "program" (below the heap); "" for a gap
    kind: str           # the region's kind (see procfs.KINDS), "several" or "gap"
    label: str          # "[heap]", "_core.abi3.so", "38 regions: 27 file, 11 anonymous"
    perms: str          # "" for runs and gaps
    regions: int        # maps lines it stands for (0 for a gap)
    mapped: int         # bytes mapped (0 for a gap)
    notes: Tuple[str, ...] = ()     # what is in it: marks, our parts, the break


def address_space(marks=(), regions=None) -> List[Band]:
    """This process's address space (its user half) as a compact diagram, high
    addresses first.

    ``marks`` are (address, label) pairs. A region holding a mark, a part of ours
    (a heap segment, an mmapped chunk), the heap or the stack gets a band of its own;
    a run of other neighbouring regions in the same area shares one band; unmapped
    stretches of GAP or more are bands too."""
    regions = sorted((r for r in (procfs.maps() if regions is None else regions)
                      if r.start < _KERNEL_HALF), key=lambda r: r.start)
    brk = procfs.brk()
    bounds = _area_bounds(regions, brk)
    bands, run, above = [], [], None
    for region in reversed(regions):
        area = _area(region, bounds)
        notes = _notes(region, marks, brk)
        shown = bool(notes) or region.kind in ("heap", "stack")
        separated = above is not None and above.start - region.end >= GAP
        if run and (shown or separated or _area(run[0], bounds) != area):
            bands.append(_run_band(run, _area(run[0], bounds)))
            run = []
        if separated:
            bands.append(Band(region.end, above.start, "", "gap", "unmapped", "", 0, 0))
        if shown:
            bands.append(_region_band(region, area, notes))
        else:
            run.append(region)
        above = region
    if run:
        bands.append(_run_band(run, _area(run[0], bounds)))
    return bands


def _area_bounds(regions, brk):
    """(heap end, stack start): what divides the address space into areas. Without a
    [heap] line (nothing moved the break yet) the break divides."""
    heaps = [r.end for r in regions if r.kind == "heap"]
    stacks = [r.start for r in regions if r.kind == "stack"]
    return heaps[-1] if heaps else brk, stacks[0] if stacks else None


def _area(region, bounds):
    heap_end, stack = bounds
    if region.kind == "heap":
        return "heap"
    if stack is not None and region.start >= stack:
        return "stack"
    return "mapping" if region.start >= heap_end else "program"


def _notes(region, marks, brk):
    notes = [f"<- {label} {address:#x}" for address, label in marks if address in region]
    notes += [f"ours: {what} {start:#x}-{end:#x} ({size_text(end - start)})"
              for start, end, what in region.ours]
    if region.kind == "heap" and region.start < brk <= region.end:
        notes.append(f"the program break {brk:#x}")
    return tuple(notes)


def _region_label(region):
    if region.kind == "file":
        return os.path.basename(region.path)
    return region.path or "anonymous"


def _region_band(region, area, notes=()):
    return Band(region.start, region.end, area, region.kind, _region_label(region),
                region.perms, 1, region.size, notes)


def _run_band(run, area):
    """Regions listed high to low, drawn as one band."""
    if len(run) == 1:
        return _region_band(run[0], area)
    counts = ", ".join(f"{n} {kind}" for kind, n in Counter(r.kind for r in run).most_common())
    return Band(run[-1].start, run[0].end, area, "several", f"{len(run)} regions: {counts}",
                "", len(run), sum(r.size for r in run))


def size_text(n):
    """Bytes for people, in the seeds' units: 512 B, 30K, 1.5M, 296.1G."""
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", MiB), ("K", KiB)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}".replace(f".0{unit}", unit)
    return f"{n} B"
