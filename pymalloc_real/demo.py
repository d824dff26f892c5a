"""The demo: the seed articles replayed on real memory, in seven steps.

0 the process layout; 1 the seeds' walk-through (A=malloc(30K) ... free(D)); 2 virtual
before physical; 3 why an mmap threshold; 4 the memory hole and malloc_trim; 5 major
faults; 6 virtually contiguous, physically scattered. Each step states the seeds'
prediction, does the experiment in this process with the real allocator and kernel,
and computes from what it observed whether the prediction held ("agrees"), did not
("DISAGREES") or cannot be tested on this machine ("n/a", with the reason). It also
records the program break, the page faults, the core's chunks and an address-space
diagram at the step's telling moment. Nothing here prints: cli.py prints, plots.py draws.
"""
import dataclasses
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from itertools import accumulate
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import heap, introspect, procfs
from ._core import ffi, lib
from .errors import PymallocError
from .glibc import reserve_glibc_slack
from .introspect import Chunk

__all__ = ["Step", "Operation", "Band", "Chart", "STEPS", "run", "address_space",
           "seed_walkthrough", "pin_seed_thresholds", "glibc_default_walk", "size_text",
           "SEED_THRESHOLD", "AGREES", "DISAGREES", "NOT_APPLICABLE"]

KiB = 1024
MiB = 1024 * KiB
SEED_THRESHOLD = 128 * KiB      # the seeds' mmap and trim thresholds

AGREES, DISAGREES, NOT_APPLICABLE = "agrees", "DISAGREES", "n/a"

# Between two readings of the fault counters the interpreter runs a little bytecode and
# builds the objects that hold the readings; it may fault a few pages of its own (a new
# arena page, a stack page). A count within this many faults of what the experiment
# predicts counts as agreeing. The experiments touch hundreds to thousands of pages, so
# this slack cannot hide a real disagreement.
FAULT_SLACK = 16

# Unmapped space at least this large is drawn as a gap of its own in the diagram.
GAP = 1 << 30
# The diagram shows the user half of the address space; above it only the kernel's
# fixed vsyscall page can appear in /proc/self/maps.
_KERNEL_HALF = 1 << 63

# The core's counters a walk-through operation reports the change of: the system calls
# that move the break or map memory, and the trims that gave memory back.
_COUNTERS = ("brk_moves", "mmap_calls", "munmap_calls", "trims")


# ---- records ------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class Chart:
    """Counts a step measured, for a small chart: one value per category and series
    ("bar", "line"), or one per index ("scatter": ``categories`` is empty)."""
    kind: str
    title: str
    xlabel: str
    ylabel: str
    categories: List[str]
    series: Dict[str, List[float]]


@dataclass(frozen=True)
class Operation:
    """One operation of the walk-through: the seeds' prediction and what happened."""
    operation: str              # e.g. "A = malloc(30K)" or "free(C)"
    block: str                  # the block allocated or freed: "A", "B", "C", "D", "B2"
    prediction: str             # the seeds' claim, in one sentence
    held: bool                  # whether the observations below bear the prediction out
    reason: str                 # the observed facts that decided ``held``
    address: int                # the block's address (what malloc returned)
    size: int                   # bytes requested
    mmapped: bool               # the block is (or was, for a free) an mmapped chunk
    break_before: int           # the program break just before the operation
    break_after: int            # and just after it
    minor_faults: int           # page faults during it, first touch of a new block
    major_faults: int           # included
    touched_pages: int          # pages of the new block it touched (0 for a free)
    counters: Dict[str, int]    # nonzero changes of the core's syscall and trim counters
    chunks: List[Chunk]         # our heap afterwards, as prm.chunks() walks it
    blocks: Dict[str, int]      # every block named so far -> its address, to label chunks
    heap_map: Optional[str]     # the /proc/self/maps line holding the break
    block_map: Optional[str]    # the maps line holding the block afterwards (None when
                                # nothing maps it any more); only for mmapped blocks

    @property
    def break_delta(self):
        return self.break_after - self.break_before

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["break_delta"] = self.break_delta
        out["chunks"] = _chunk_dicts(self.chunks)
        return out


@dataclass(frozen=True)
class Step:
    """One of the demo's seven steps: the prediction, the verdict and its reason, what
    was measured, and the picture at the step's telling moment (``moment``)."""
    number: int
    title: str
    slug: str                       # names the step's picture: step<number>_<slug>.png
    prediction: str
    verdict: str                    # AGREES, DISAGREES or NOT_APPLICABLE
    reason: str                     # the observations that decided it (or why n/a)
    observations: List[Tuple[str, str]]     # (label, text) lines for people
    measures: Dict[str, object]     # the numbers, for programs
    chart: Optional[Chart]
    moment: str                     # when ``space`` and ``chunks`` were taken
    space: List[Band]
    chunks: List[Chunk]
    names: Dict[str, int]           # block name -> address, to label chunks
    operations: List[Operation]     # step 1's walk-through; empty otherwise
    break_before: int               # the program break when the step started
    break_after: int                # and when it ended
    minor_faults: int               # faults over the whole step, the interpreter's own
    major_faults: int               # work included
    seconds: float

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["chunks"] = _chunk_dicts(self.chunks)
        out["operations"] = [op.as_dict() for op in self.operations]
        out["observations"] = [list(pair) for pair in self.observations]
        return out


def _chunk_dicts(chunks):
    return [dict(dataclasses.asdict(c), flags=c.flags, mem=c.mem) for c in chunks]


@dataclass
class _Outcome:
    """What a step's experiment returns to the runner."""
    prediction: str
    verdict: str
    reason: str
    observations: List[Tuple[str, str]] = field(default_factory=list)
    measures: Dict[str, object] = field(default_factory=dict)
    chart: Optional[Chart] = None
    operations: List[Operation] = field(default_factory=list)


class _Scene:
    """The picture of a step: the experiment calls ``snapshot`` at its telling moment,
    while its blocks are alive."""

    def __init__(self):
        self.moment, self.space, self.chunks, self.names = "", [], [], {}

    def snapshot(self, moment, marks=(), names=None, regions=None):
        self.moment = moment
        self.chunks = introspect.chunks()
        self.space = address_space(marks, regions)
        self.names = dict(names or {})


def _verdict(checks, agreed):
    """(verdict, reason): DISAGREES with the first failed check's text, else AGREES with
    ``agreed``. ``checks`` is a list of (ok, what was observed instead)."""
    for ok, failure in checks:
        if not ok:
            return DISAGREES, failure
    return AGREES, agreed


# ---- running the steps --------------------------------------------------------------------

def run(numbers=None) -> List[Step]:
    """Run the demo's steps (all of 0..6 by default) in this process, in order.

    Step 1 needs our heap to be the one at the program break, so in a process where the
    core has allocated before it disagrees; every other step sets up what it needs and
    frees what it allocated. Thresholds set by steps 1, 3 and 4 stay set (mallopt is
    process-wide)."""
    numbers = sorted(set(STEPS if numbers is None else numbers))
    unknown = [n for n in numbers if n not in STEPS]
    if unknown:
        raise ValueError(f"no demo step {unknown[0]}: steps are 0 to {max(STEPS)}")
    return [_run_step(number) for number in numbers]


def _run_step(number):
    title, slug, experiment = STEPS[number]
    scene = _Scene()
    started = time.perf_counter()
    break_before, faults_before = procfs.brk(), procfs.faults()
    outcome = experiment(scene)
    faults_after, break_after = procfs.faults(), procfs.brk()
    introspect.check()          # a damaged heap is an error, not a disagreement
    return Step(number=number, title=title, slug=slug, prediction=outcome.prediction,
                verdict=outcome.verdict, reason=outcome.reason,
                observations=outcome.observations, measures=outcome.measures,
                chart=outcome.chart, moment=scene.moment, space=scene.space,
                chunks=scene.chunks, names=scene.names, operations=outcome.operations,
                break_before=break_before, break_after=break_after,
                minor_faults=faults_after[0] - faults_before[0],
                major_faults=faults_after[1] - faults_before[1],
                seconds=time.perf_counter() - started)


# ---- the address-space diagram ---------------------------------------------------------------

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


# ---- step 0: the process layout ---------------------------------------------------------------

_ROLES = (("text", "a function"), ("data", "an initialised global"),
          ("bss", "an uninitialised global"), ("stack", "a local variable"),
          ("mapping", "an anonymous mmap"))


def _layout(scene):
    with procfs.process_layout() as layout:
        regions = procfs.maps()
        found = {role: procfs.region_of(getattr(layout, role), regions) for role, _ in _ROLES}
        # The break is one past the heap's last byte.
        found["heap"] = procfs.region_of(layout.heap_break - 1, regions)
        program = [r for r in regions if r.path == os.path.realpath(sys.executable)]
        marks = [(getattr(layout, role), f"{role} ({what})") for role, what in _ROLES]
        marks += [(r.start, f"the interpreter's {_file_role(r)}") for r in program]
        scene.snapshot("inside the probe, its mmap page still mapped", marks, regions=regions)
    verdict, reason = _verdict(_layout_checks(layout, found, program),
                               "text < data < bss inside the probe's shared object (itself "
                               "mmapped, so in the mapping area); the interpreter's executable "
                               "(text, data) lies below [heap] as the seeds draw a program; the "
                               "break ends [heap]; the mmap page lies between heap and stack; "
                               "the local variable is in [stack], above them all")
    observations = []
    for role, what in _ROLES[:3] + (("heap", "the program break"),) + _ROLES[3:]:
        address = layout.heap_break if role == "heap" else getattr(layout, role)
        region = found[role]
        observations.append((role, f"{address:#x}  {what}"))
        observations.append(("", str(region) if region else "(no region of /proc/self/maps)"))
    totals = procfs.totals_by_kind(regions)
    return _Outcome(
        prediction="Seed 001's first program, from low to high addresses: text (a function), "
                   "data (an initialised global), bss (an uninitialised global), the heap up "
                   "to the break, the mapping area (mmap), and the stack (a local variable).",
        verdict=verdict, reason=reason, observations=observations,
        measures={"layout": dataclasses.asdict(layout),
                  "regions": {role: str(r) if r else None for role, r in found.items()},
                  "program": [str(r) for r in program], "mapped_by_kind": totals},
        chart=Chart("bar", "mapped memory by kind", "", "MiB", list(procfs.KINDS),
                    {"mapped": [totals[k] / MiB for k in procfs.KINDS]}))


def _file_role(region):
    if "x" in region.perms:
        return "text"
    return "data" if "w" in region.perms else "read-only data"


def _layout_checks(layout, found, program):
    text, data, bss, heap_region = found["text"], found["data"], found["bss"], found["heap"]
    mapping, stack = found["mapping"], found["stack"]
    return [
        (text is not None and "x" in text.perms and text.kind == "file",
         "the function is not in an executable file-backed region"),
        (data is not None and text is not None and data.perms.startswith("rw")
         and data.path == text.path,
         "the initialised global is not in the writable part of the same file"),
        (bss is not None and bss.perms.startswith("rw"),
         "the uninitialised global is not in writable memory"),
        (layout.text < layout.data < layout.bss, "text, data and bss are not in that order"),
        (heap_region is not None and heap_region.kind == "heap",
         "the program break is not the end of the [heap] region"),
        (bool(program) and heap_region is not None
         and max(r.end for r in program) <= heap_region.start,
         "the interpreter's executable is not mapped below the heap"),
        (mapping is not None and mapping.anonymous and heap_region is not None
         and heap_region.end <= layout.mapping < layout.stack,
         "the anonymous mmap is not between the heap and the stack"),
        (stack is not None and stack.kind == "stack"
         and layout.stack > max(layout.text, layout.data, layout.bss, layout.mapping),
         "the local variable is not in [stack] above everything else"),
    ]


# ---- step 1: the seeds' walk-through ----------------------------------------------------------

def _walkthrough(scene):
    operations = seed_walkthrough(scene)
    child = _glibc_defaults_in_child()
    dynamic_held, dynamic_reason = _judge_glibc_defaults(child)
    failed = [(n, op) for n, op in enumerate(operations, 1) if not op.held]
    if failed:
        number, op = failed[0]
        verdict, reason = DISAGREES, f"operation {number} ({op.operation}): {op.reason}"
    elif not dynamic_held:
        verdict, reason = DISAGREES, f"with glibc's defaults: {dynamic_reason}"
    else:
        verdict, reason = AGREES, (f"all {len(operations)} operations behaved as the seeds "
                                   "say; and with glibc's dynamic threshold left on, the heap "
                                   "would not have shrunk")
    base = operations[0].break_before
    return _Outcome(
        prediction="With the thresholds fixed at 128K as the seeds assume (mmap and trim "
                   "threshold, no top pad): A and B push the break, C is an mmap, D pushes "
                   "the break, free(C) unmaps, free(B) leaves a hole a new 40K request "
                   "reuses, free(D) merges B and D into the top and the break moves down. "
                   "With glibc's dynamic threshold on instead, free(C) raises the trim "
                   "threshold and the heap does not shrink.",
        verdict=verdict, reason=reason, operations=operations,
        observations=[("defaults", dynamic_reason)],
        measures={"thresholds": SEED_THRESHOLD, "glibc_defaults": child,
                  "glibc_defaults_held": dynamic_held},
        chart=Chart("line", "the program break after each operation", "",
                    "KiB above the starting break", ["start"] + [op.operation for op in operations],
                    {"break": [0] + [(op.break_after - base) / KiB for op in operations]}))


def glibc_default_walk():
    """The walk-through's A, B, C, D, free(C), free(B), free(D) with the core's defaults,
    which are glibc's: dynamic mmap threshold on, 128K top pad. Meant for a fresh process
    (step 1 runs it in one); returns plain numbers. Everything allocated is freed."""
    reserve_glibc_slack()
    a, b, c, d = (heap.malloc(n * KiB) for n in (30, 40, 200, 100))
    c_chunk = introspect.chunk_of(c).size
    c_mmapped = introspect.chunk_of(c).mmapped
    c.free()
    after_c = introspect.stats()
    b.free()
    chunks = introspect.chunks()
    hole = _chunk_at(chunks, b.address)
    top = next(ch for ch in chunks if ch.kind == "top")
    before, trims = procfs.brk(), introspect.stats().trims
    d.free()
    after, trims_after = procfs.brk(), introspect.stats().trims
    a.free()
    return {"c_chunk": c_chunk, "c_mmapped": c_mmapped,
            "mmap_threshold": after_c.mmap_threshold,
            "trim_threshold": after_c.trim_threshold,
            "free_top_after_merge": top.address + top.size - hole.address,
            "break_before_free_d": before, "break_after_free_d": after,
            "trims": trims_after - trims}


# The child's stdout is a data channel (one JSON document), not output for people.
_CHILD = ("import json, sys; from pymalloc_real.demo import glibc_default_walk; "
          "json.dump(glibc_default_walk(), sys.stdout)")


def _glibc_defaults_in_child():
    """glibc_default_walk() in a fresh interpreter: mallopt here has already fixed the
    thresholds for this whole process, as it would in glibc."""
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise PymallocError(f"the walk-through with glibc's defaults failed in a child "
                            f"process (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def _judge_glibc_defaults(child):
    c = child["c_chunk"]
    moved = child["break_after_free_d"] - child["break_before_free_d"]
    merged = child["free_top_after_merge"]
    held, reason = _verdict([
        (child["c_mmapped"], "C was not mmapped"),
        (child["mmap_threshold"] == c and child["trim_threshold"] == 2 * c,
         f"free(C) left the thresholds at mmap {size_text(child['mmap_threshold'])}, trim "
         f"{size_text(child['trim_threshold'])}, not C's {size_text(c)} and twice that"),
        (SEED_THRESHOLD < merged < child["trim_threshold"],
         f"the free top after free(D) is {size_text(merged)}: not between the seeds' 128K "
         f"and the raised {size_text(child['trim_threshold'])}"),
        (moved == 0 and child["trims"] == 0, f"free(D) trimmed: the break moved {moved:+d} B"),
    ], f"in a fresh process, free(C) raised the mmap threshold to C's chunk size "
       f"({size_text(c)}) and the trim threshold to {size_text(2 * c)}; free(D) then left "
       f"{size_text(merged)} of free top, over the seeds' 128K, and the break did not move")
    return held == AGREES, reason


# ---- step 2: virtual before physical ---------------------------------------------------------

def _virtual_first(scene):
    size, half = 64 * MiB, 32 * MiB
    before = procfs.faults()
    block = heap.malloc(size)
    after = procfs.faults()
    try:
        procfs.no_huge_pages(block)
        resident_new = sum(procfs.residency(block))
        untouched = procfs.residency(block.address, half).count(False)
        start = procfs.faults()
        _touch(block.address, half)
        touched = procfs.faults()
        resident = procfs.residency(block)
        scene.snapshot("the 64M block alive, its first half touched",
                       [(block.address, "the 64M block")], {"64M": block.address})
    finally:
        block.free()
    pages = len(resident)
    malloc_faults, touch_faults = after[0] - before[0], touched[0] - start[0]
    share = sum(resident) / pages
    verdict, reason = _verdict([
        (malloc_faults <= FAULT_SLACK, f"malloc(64M) took {_faults(malloc_faults)}"),
        (resident_new <= 1, f"{resident_new} of its pages were resident before any touch"),
        (untouched <= touch_faults <= untouched + FAULT_SLACK,
         f"touching {untouched} new pages took {_faults(touch_faults)}"),
        (abs(share - 0.5) <= 0.01, f"{share:.1%} of the pages are resident after the touch"),
    ], f"malloc(64M) took {_faults(malloc_faults)} and left {resident_new} of {pages} pages "
       f"resident ({resident_new / pages:.1%}; malloc writes the chunk's header); touching "
       f"{untouched} pages took {touch_faults} minor faults and {share:.1%} became resident")
    return _Outcome(
        prediction="malloc(64M) gives virtual memory only: (almost) no page faults and 0% of "
                   "its pages resident. Touching half of it takes one minor fault per page "
                   "(the block is marked MADV_NOHUGEPAGE) and leaves 50% resident.",
        verdict=verdict, reason=reason,
        observations=[("malloc", f"{_faults(malloc_faults)}; {resident_new} of {pages} "
                                 "pages resident"),
                      ("touch half", f"{touch_faults} minor faults for {untouched} pages not "
                                     f"yet resident; {sum(resident)} of {pages} resident "
                                     f"({share:.1%})")],
        measures={"size": size, "pages": pages, "malloc_faults": malloc_faults,
                  "resident_after_malloc": resident_new, "touched_pages": untouched,
                  "touch_faults": touch_faults, "resident_after_touch": sum(resident),
                  "resident_share": share, "slack": FAULT_SLACK},
        chart=Chart("bar", f"page faults; resident: {resident_new / pages:.0%} after malloc, "
                           f"{share:.0%} after touching half", "",
                    "page faults", ["malloc(64M)", "touch half"],
                    {"minor faults": [malloc_faults, touch_faults]}))


def _faults(n):
    return f"{n} page fault{'' if n == 1 else 's'}"


def _touch(address, length):
    """One write per page of [address, address + length), in C (the core's prm_touch)."""
    lib.prm_touch(ffi.cast("void *", address), length)


# ---- step 3: why a threshold -----------------------------------------------------------------

@dataclass(frozen=True)
class _Round:
    faults: int         # minor faults from malloc to the end of the touch
    pages: int          # pages the block spans
    mmapped: bool
    mmaps: int          # mmap calls the round made


def _why_threshold(scene):
    rounds, size = 10, MiB
    pin_seed_thresholds()
    by_mmap = _rounds(rounds, size)
    # Raise both thresholds as glibc's dynamic threshold would (trim = 2 x mmap): with
    # the trim threshold left at 128K, each free would give the 1M top straight back.
    heap.mallopt(heap.M_MMAP_THRESHOLD, 2 * MiB)
    heap.mallopt(heap.M_TRIM_THRESHOLD, 4 * MiB)
    try:
        by_heap = _rounds(rounds, size, scene)
    finally:
        pin_seed_thresholds()
        heap.malloc_trim(0)
    pages = by_mmap[0].pages
    later = [r.faults for r in by_heap[1:]]
    low, high = min(r.faults for r in by_mmap), max(r.faults for r in by_mmap)
    verdict, reason = _verdict([
        (all(r.mmapped and r.mmaps == 1 for r in by_mmap), "not every 1M block was an mmap"),
        (all(abs(r.faults - r.pages) <= FAULT_SLACK for r in by_mmap),
         f"mmapped rounds faulted {[r.faults for r in by_mmap]} for {pages} pages each"),
        (not any(r.mmapped or r.mmaps for r in by_heap), "a heap round used mmap"),
        (by_heap[0].faults <= by_heap[0].pages + FAULT_SLACK,
         f"the first heap round faulted {by_heap[0].faults} times for {pages} pages"),
        (max(later) <= FAULT_SLACK, f"later heap rounds faulted {later} times"),
    ], f"by mmap every round took {low if low == high else f'{low} to {high}'} faults for its "
       f"{pages} pages; from the heap the first round took {by_heap[0].faults} and the other "
       f"{rounds - 1} at most {max(later)} each")
    return _Outcome(
        prediction="Ten rounds of malloc(1M), touch, free: served by mmap (threshold pinned "
                   "at 128K, dynamic threshold off) every round maps fresh memory and faults "
                   "in every page again; served from the brk heap (mallopt: mmap threshold "
                   "2M, trim threshold 4M) only the first round faults, the others reuse "
                   "resident pages. Blocks are marked MADV_NOHUGEPAGE.",
        verdict=verdict, reason=reason,
        observations=[("by mmap", f"faults per round: {[r.faults for r in by_mmap]}"),
                      ("from heap", f"faults per round: {[r.faults for r in by_heap]}")],
        measures={"size": size, "pages": pages, "slack": FAULT_SLACK,
                  "mmap": [dataclasses.asdict(r) for r in by_mmap],
                  "heap": [dataclasses.asdict(r) for r in by_heap]},
        chart=Chart("line", "page faults per malloc(1M) + touch + free round", "round",
                    "minor faults", [str(n) for n in range(1, rounds + 1)],
                    {"mmap (threshold 128K)": [r.faults for r in by_mmap],
                     "brk heap (threshold 2M)": [r.faults for r in by_heap]}))


def _rounds(count, size, scene=None):
    out = []
    for number in range(count):
        mmaps = introspect.stats().mmap_calls
        before = procfs.faults()
        block = heap.malloc(size)
        procfs.no_huge_pages(block)
        block.touch()
        after = procfs.faults()
        mmapped = introspect.chunk_of(block).mmapped
        if scene is not None and number == count - 1:
            scene.snapshot("the last heap round's 1M block, touched",
                           [(block.address, "the 1M block")], {"1M": block.address})
        block.free()
        out.append(_Round(after[0] - before[0], _pages_spanned(block.address, size),
                          mmapped, introspect.stats().mmap_calls - mmaps))
    return out


# ---- step 4: the memory hole -----------------------------------------------------------------

def _memory_hole(scene):
    reserve_glibc_slack()
    pin_seed_thresholds()
    # The pin is the last of 65 blocks of 64K. A smaller one could be served from a free
    # remnant lower in the heap (such as the old top of a segment closed because the
    # interpreter moved the break), and would then pin nothing.
    with procfs.track() as grow:
        *blocks, pin = [heap.malloc(64 * KiB) for _ in range(65)]
        for block in blocks + [pin]:
            procfs.no_huge_pages(block)
            block.touch()
    hole = [(b.address, b.size) for b in blocks]
    stages = [("allocated", grow, introspect.ledger(), _resident(hole))]
    with procfs.track() as freed:
        for block in blocks:
            block.free()
    stages.append(("freed", freed, introspect.ledger(), _resident(hole)))
    scene.snapshot("the 64 blocks freed, the pin still in use above them",
                   [(pin.address, "the pin: the 65th block, in use"),
                    (blocks[0].address, "the hole: 64 x 64K freed, below the pin")],
                   {"hole": blocks[0].address, "pin": pin.address})
    with procfs.track() as trimmed:
        heap.malloc_trim(0)
    stages.append(("trim", trimmed, introspect.ledger(), _resident(hole)))
    pin_address, pin_end = pin.address, pin.address + pin.size
    with procfs.track() as unpinned:
        pin.free()
    stages.append(("free(pin)", unpinned, introspect.ledger(), None))
    return _judge_hole(stages, max(b.address for b in blocks), pin_address, pin_end)


def _resident(ranges):
    """(pages, resident pages) of the memory in ``ranges``, each page counted once."""
    page, flags = procfs.page_size(), {}
    for address, size in ranges:
        for i, resident in enumerate(procfs.residency(address, size)):
            flags[address // page + i] = flags.get(address // page + i, False) or resident
    return len(flags), sum(flags.values())


_HOLE_STAGES = {"allocated": "65 x malloc(64K), touched",
                "freed": "all but the last (the pin) freed", "trim": "malloc_trim(0)",
                "free(pin)": "the pin freed"}


def _judge_hole(stages, highest_block, pin_address, pin_end):
    (_, freed, _, (pages, kept)), (_, trimmed, _, (_, left)) = stages[1:3]
    unpinned = stages[3][1]
    page = procfs.page_size()
    released = (kept - left) * page
    verdict, reason = _verdict([
        (pin_address > highest_block, "the pin did not land above the other blocks"),
        (freed.break_delta == 0, f"freeing the blocks moved the break {_signed(freed.break_delta)}"),
        (kept >= 0.95 * pages, f"only {kept} of the hole's {pages} pages stayed resident"),
        # RSS is the whole process's: the interpreter's own work moves it a little.
        (freed.rss_delta > -0.1 * pages * page, f"RSS fell {_signed(freed.rss_delta)} at the frees"),
        (left <= 0.05 * pages, f"{left} of the hole's {pages} pages are resident after malloc_trim"),
        (trimmed.rss_delta <= -0.9 * released, f"RSS changed {_signed(trimmed.rss_delta)} at "
                                               f"malloc_trim, which released {size_text(released)}"),
        (trimmed.after["brk"] >= pin_end, "malloc_trim lowered the break below the pin"),
        (unpinned.after["brk"] <= pin_address,
         f"free(pin) left the break above where the pin was ({_signed(unpinned.break_delta)})"),
    ], f"after the frees the break stayed and {kept} of the hole's {pages} pages stayed resident "
       f"(RSS {_signed(freed.rss_delta)}); malloc_trim released {size_text(released)} with "
       f"MADV_DONTNEED ({left} pages left, RSS {_signed(trimmed.rss_delta)}, break "
       f"{_signed(trimmed.break_delta)}); free(pin) then trimmed the break by "
       f"{size_text(-unpinned.break_delta)}")
    observations = [(name, f"{_HOLE_STAGES[name]}: break {_signed(t.break_delta)}, RSS "
                           f"{_signed(t.rss_delta)}" + (f"; hole pages resident {r[1]} of {r[0]}"
                                                        if r else ""))
                    for name, t, _, r in stages]
    rss = list(accumulate(t.rss_delta for _, t, _, _ in stages))
    return _Outcome(
        prediction="A block in use at the top of the heap (the last of 65 blocks of 64K) pins "
                   "the 4M freed below it: the break cannot move and the freed pages stay "
                   "resident (RSS stays up). malloc_trim gives those pages back with "
                   "madvise(MADV_DONTNEED): RSS drops while the break stays. Once the pin is "
                   "freed the free top exceeds the 128K trim threshold and the break moves "
                   "down past the hole.",
        verdict=verdict, reason=reason, observations=observations,
        measures={"hole_pages": pages, "released": released,
                  "stages": [{"stage": name, "break_delta": t.break_delta,
                              "rss_delta": t.rss_delta, "hole_resident": r[1] if r else None,
                              "ledger": led.as_dict()} for name, t, led, r in stages]},
        chart=Chart("bar", "memory after each stage", "", "MiB",
                    [name for name, _, _, _ in stages],
                    {"RSS above the start": [n / MiB for n in rss],
                     "free but resident (ledger)": [led.free_resident / MiB
                                                    for _, _, led, _ in stages]}))


def _signed(n):
    return f"{'+' if n > 0 else '-'}{size_text(abs(n))}" if n else "unchanged"


# ---- step 5: major faults --------------------------------------------------------------------

def _major_faults(scene):
    size, attempts = 4 * MiB, []
    for directory in _candidate_directories():
        try:
            cold, warm = _read_evicted_file(directory, size, scene)
        except OSError as error:
            attempts.append(f"{directory}: {error.strerror or error}")
            continue
        if cold["evicted"] < cold["pages"] // 2:
            attempts.append(f"{directory}: page-cache eviction had no effect on this "
                            f"filesystem (mincore: {cold['pages'] - cold['evicted']} of "
                            f"{cold['pages']} pages still resident)")
            continue
        return _judge_major(directory, cold, warm, attempts)
    return _Outcome(prediction=_MAJOR_PREDICTION, verdict=NOT_APPLICABLE,
                    reason="no directory tried lets this process evict a file from the page "
                           "cache: " + "; ".join(attempts),
                    measures={"attempts": attempts})


_MAJOR_PREDICTION = ("A page read through a file mapping after the file was evicted from the "
                     "page cache must come from disk: a major fault (the mapping is "
                     "MADV_RANDOM, so the kernel reads no neighbours ahead: one per page). "
                     "Read again with the file cached, the same pages cost no major fault.")


def _candidate_directories():
    """Where to put the file: the temporary directory first, then the usual disk-backed
    ones, since /tmp may be tmpfs, whose pages cannot be evicted."""
    seen, out = set(), []
    for directory in (tempfile.gettempdir(), "/var/tmp", os.getcwd()):
        real = os.path.realpath(directory)
        if real not in seen and os.path.isdir(real) and os.access(real, os.W_OK):
            seen.add(real)
            out.append(directory)
    return out


def _read_evicted_file(directory, size, scene):
    """Write a file, fsync it (only clean pages can be dropped), evict it with
    posix_fadvise(DONTNEED), then read it through a mapping twice: cold and warm."""
    fd, path = tempfile.mkstemp(prefix="pymalloc-real-demo-", dir=directory)
    try:
        chunk = bytes(range(256)) * (MiB // 256)
        for _ in range(size // MiB):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        cold = _read_through_mapping(fd, path, size, scene)
        warm = _read_through_mapping(fd, path, size)
    finally:
        os.close(fd)
        os.unlink(path)
    return cold, warm


def _read_through_mapping(fd, path, size, scene=None):
    page = procfs.page_size()
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        mapped.madvise(mmap.MADV_RANDOM)
        inode = os.fstat(fd).st_ino
        regions = procfs.maps()
        region = next(r for r in regions
                      if r.inode == inode and r.path == os.path.realpath(path))
        resident = procfs.residency(region.start, size)
        before = procfs.faults()
        for offset in range(0, size, page):
            mapped[offset]                  # one read per page
        after = procfs.faults()
        resident_after = procfs.residency(region.start, size)
        if scene is not None:
            scene.snapshot("the file mapped, after eviction, and read once",
                           [(region.start, f"{size_text(size)} file, read")], regions=regions)
    return {"pages": len(resident), "evicted": resident.count(False),
            "minor": after[0] - before[0], "major": after[1] - before[1],
            "resident_after": sum(resident_after)}


def _judge_major(directory, cold, warm, attempts):
    evicted, major = cold["evicted"], cold["major"]
    per_fault = evicted / major if major else 0
    verdict, reason = _verdict([
        (major >= 1, f"reading {evicted} evicted pages took no major fault"),
        (major <= evicted + FAULT_SLACK, f"{major} major faults for {evicted} evicted pages"),
        (cold["resident_after"] == cold["pages"], "the file is not all resident after reading"),
        (warm["major"] == 0, f"reading the cached file again took {warm['major']} major faults"),
    ], f"reading {evicted} evicted pages took {major} major faults ({per_fault:.1f} pages "
       f"per fault); read again from the page cache: {warm['major']} major, "
       f"{warm['minor']} minor (the kernel maps cached neighbours around each fault)")
    return _Outcome(
        prediction=_MAJOR_PREDICTION, verdict=verdict, reason=reason,
        observations=[("file", f"{size_text(cold['pages'] * procfs.page_size())} in "
                               f"{directory}; {evicted} of {cold['pages']} pages evicted")]
                     + [("tried", a) for a in attempts]
                     + [("cold read", f"{major} major, {cold['minor']} minor faults"),
                        ("warm read", f"{warm['major']} major, {warm['minor']} minor faults")],
        measures={"directory": directory, "cold": cold, "warm": warm, "attempts": attempts},
        chart=Chart("bar", "reading a file through mmap, one byte per page", "", "page faults",
                    ["evicted (cold)", "cached (warm)"],
                    {"major": [major, warm["major"]], "minor": [cold["minor"], warm["minor"]]}))


# ---- step 6: virtually contiguous, physically scattered ----------------------------------------

_FRAMES_SHOWN = 24     # frame numbers listed for people; --json has them all


def _scattered(scene):
    # 256 pages: the kernel's per-CPU free lists often hold runs of consecutive frames
    # (a freshly split large block is handed out in order), so a short block can land
    # in one run by chance.
    page = procfs.page_size()
    block = heap.malloc(256 * page)
    try:
        procfs.no_huge_pages(block)
        block.touch()
        frames = procfs.physical_pages(block)
        scene.snapshot("the 256-page block alive and touched",
                       [(block.address, "the 256-page block")], {"blk": block.address})
    finally:
        block.free()
    prediction = ("A block's pages are contiguous in virtual memory, but each is backed by "
                  "whatever physical page frame the kernel had free at its first touch: the "
                  "frame numbers are not consecutive.")
    if frames.hidden:
        return _Outcome(prediction, NOT_APPLICABLE, frames.reason)
    numbers = frames.frames
    present = [n for n in numbers if n is not None]
    breaks = sum(b != a + 1 for a, b in zip(present, present[1:]))
    verdict, reason = _verdict([
        (len(present) == len(numbers), f"{len(numbers) - len(present)} touched pages have no frame"),
        (len(set(present)) == len(present), "two pages share a frame"),
        (breaks >= 1, f"all {len(numbers)} frames are consecutive"),
    ], f"{len(numbers)} virtually consecutive pages sit in {len(set(present))} distinct frames; "
       f"{breaks} of the {len(numbers) - 1} steps from one page to the next are not to the "
       "next frame")
    return _Outcome(
        prediction, verdict, reason,
        observations=[("frames", " ".join(f"{n:#x}" for n in present[:_FRAMES_SHOWN])
                       + (f" ... ({len(present) - _FRAMES_SHOWN} more)"
                          if len(present) > _FRAMES_SHOWN else ""))],
        measures={"frames": numbers, "breaks": breaks, "pages": len(numbers)},
        chart=Chart("scatter", "physical frame of each virtual page", "virtual page",
                    "frame number", [], {"frame": present}))


# ---- the walk-through itself --------------------------------------------------------------------

def seed_walkthrough(scene=None) -> List[Operation]:
    """Replay the seeds' walk-through in this process; one Operation per operation.

    It pins the seeds' fixed world for the whole process (mmap and trim thresholds of
    128 KiB, no top pad: process-wide settings, as with glibc's mallopt) and gives
    glibc's own heap slack so the interpreter does not move the break meanwhile. The
    predictions assume a heap nobody used before, so run it in a fresh process.
    With a ``scene``, it snapshots the address space after D = malloc(100K).
    Everything it allocates is freed before it returns.
    """
    reserve_glibc_slack()
    pin_seed_thresholds()
    walk = _Walk(scene)
    try:
        walk.malloc("A", 30 * KiB, "Below the 128K mmap threshold, so malloc pushes the "
                    "break up (brk) by about 30K.", _pushes_break)
        walk.malloc("B", 40 * KiB, "Also below the threshold: the break moves up by about "
                    "40K more.", _pushes_break)
        walk.malloc("C", 200 * KiB, "Above the 128K mmap threshold: C gets a mapping of "
                    "its own between heap and stack (mmap), and the break stays.",
                    _own_mapping)
        walk.malloc("D", 100 * KiB, "Below the threshold: the break moves up by about "
                    "100K.", _pushes_break)
        walk.free("C", "C was mmapped, so free unmaps it at once: its memory goes "
                  "straight back to the kernel.", _unmapped)
        walk.free("B", "B becomes a hole: D above it is in use, so the break cannot move "
                  "back and B's memory stays with the process.", _left_hole)
        walk.malloc("B2", 40 * KiB, "A new 40K request reuses B's hole: malloc returns "
                    "B's address and the break stays.", _reuses_hole)
        walk.free("B2", "The hole is free again and the break stays, since D above it is "
                  "still in use.", _left_hole)
        walk.free("D", "D merges with the free B below and the top above into 140K+ of "
                  "free top; that exceeds the 128K trim threshold, so the heap is trimmed "
                  "and the break moves down.", _trimmed)
    finally:
        walk.free_all()
    return walk.operations


def pin_seed_thresholds():
    """The seeds' fixed world: mmap and trim thresholds of 128 KiB and no top pad, so
    every heap growth moves the break by just what the request needs. As with glibc,
    fixing a threshold also turns off the dynamic one, for the whole process."""
    heap.mallopt(heap.M_MMAP_THRESHOLD, SEED_THRESHOLD)
    heap.mallopt(heap.M_TRIM_THRESHOLD, SEED_THRESHOLD)
    heap.mallopt(heap.M_TOP_PAD, 0)


@dataclass
class _Facts:
    """What a judge sees of an operation besides the walk itself."""
    name: str
    address: int
    size: int
    chunk_before: Optional[Chunk]    # the block's chunk before the operation (frees only)
    chunk: Optional[Chunk]           # its chunk afterwards, if it still has one
    chunks_before: List[Chunk]
    chunks: List[Chunk]
    break_before: int
    break_after: int
    counters: Dict[str, int]
    region: Optional[procfs.MapRegion]   # the mapping holding the block afterwards


class _Walk:
    """The blocks of the walk-through by name, and the operations recorded so far."""

    def __init__(self, scene):
        self.scene = scene
        self.live: Dict[str, heap.Block] = {}
        self.addresses: Dict[str, int] = {}
        self.operations: List[Operation] = []
        self.page = procfs.page_size()

    def malloc(self, name, size, prediction, judge):
        def allocate():
            block = heap.malloc(size)
            block.touch()           # first touch: the page faults show up in this operation
            return block
        self._record(f"{name} = malloc({size // KiB}K)", name, prediction, judge, allocate)
        if name == "D" and self.scene is not None:
            self.scene.snapshot("after D = malloc(100K), while C is still mapped",
                                [(self.addresses[n], n) for n in self.live],
                                self.addresses)

    def free(self, name, prediction, judge):
        self._record(f"free({name})", name, prediction, judge, self.live[name].free)

    def free_all(self):
        for block in self.live.values():
            if not block.freed:
                block.free()
        self.live.clear()

    def _record(self, operation, name, prediction, judge, action):
        freeing = name in self.live
        chunks_before = introspect.chunks()
        chunk_before = _chunk_at(chunks_before, self.addresses[name]) if freeing else None
        stats_before = introspect.stats()
        # Only the operation itself between the two readings of the break and the faults.
        break_before = procfs.brk()
        faults_before = procfs.faults()
        result = action()
        faults_after = procfs.faults()
        break_after = procfs.brk()
        stats_after = introspect.stats()

        if freeing:
            block = self.live.pop(name)
        else:
            block = self.live[name] = result
            self.addresses[name] = block.address
        address, size = block.address, block.size
        chunks = introspect.chunks()
        chunk = _chunk_at(chunks, address)
        regions = procfs.maps()
        region = procfs.region_of(address, regions) \
            if procfs.is_mapped(address, size) else None
        counters = {key: getattr(stats_after, key) - getattr(stats_before, key)
                    for key in _COUNTERS}
        facts = _Facts(name, address, size, chunk_before, chunk, chunks_before, chunks,
                       break_before, break_after, counters, region)
        held, reason = judge(self, facts)
        introspect.check()          # a damaged heap is an error, not a disagreement
        known = chunk_before if freeing else chunk
        mmapped = bool(known and known.mmapped)
        heap_region = procfs.region_of(break_after - 1, regions)
        self.operations.append(Operation(
            operation=operation, block=name, prediction=prediction, held=held,
            reason=reason, address=address, size=size, mmapped=mmapped,
            break_before=break_before, break_after=break_after,
            minor_faults=faults_after[0] - faults_before[0],
            major_faults=faults_after[1] - faults_before[1],
            touched_pages=0 if freeing else _pages_spanned(address, size, self.page),
            counters={k: v for k, v in counters.items() if v},
            chunks=chunks, blocks=dict(self.addresses),
            heap_map=str(heap_region) if heap_region else None,
            block_map=str(region) if region and mmapped else None))


def _chunk_at(chunks, address):
    for chunk in chunks:
        if chunk.mem == address and chunk.kind in ("chunk", "mmapped"):
            return chunk
    return None


def _pages_spanned(address, size, page=None):
    page = page or procfs.page_size()
    return (address + size - 1) // page - address // page + 1


def _break_moved(f):
    moved = f.break_after - f.break_before
    return f"the break moved {moved:+d} B" if moved else "the break did not move"


# ---- judging the walk-through's predictions -------------------------------------------------
# Each judge returns (held, reason): whether the observations match the seeds' claim,
# and the facts that say so, or the first one that does not.

def _pushes_break(walk, f):
    grew = f.break_after - f.break_before
    if f.chunk is None:
        return False, f"no chunk of ours holds {f.name}"
    if f.chunk.mmapped:
        return False, f"{f.name} got a mapping of its own (M bit), not heap memory"
    # With no top pad the break grows by what the chunk needs, rounded up to pages.
    if not f.size <= grew < f.size + 2 * walk.page:
        return False, f"{_break_moved(f)} for a {size_text(f.size)} request"
    if not f.break_before < f.address + f.size <= f.break_after:
        return False, f"{f.name} does not end in the memory the break just added"
    return True, (f"break +{size_text(grew)} for a {size_text(f.size)} request; {f.name} is "
                  "a heap chunk (no M bit) ending in the memory the break added")


def _own_mapping(walk, f):
    r = f.region
    if f.chunk is None or not f.chunk.mmapped:
        return False, f"{f.name} came from the heap (no M bit), not from a mapping of its own"
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    if r is None or not r.anonymous or not r.perms.startswith("rw"):
        return False, f"no anonymous rw mapping holds {f.name}"
    if f.break_after - 1 in r:
        return False, f"{f.name}'s mapping is the heap itself"
    return True, (f"break unchanged; {f.name} is an mmapped chunk (M bit) in an anonymous "
                  f"{r.perms} mapping of {size_text(r.size)}, away from the heap")


def _unmapped(walk, f):
    if f.chunk_before is None or not f.chunk_before.mmapped:
        return False, f"{f.name} was a heap chunk (no M bit), so there was no mapping to undo"
    if f.region is not None:
        return False, f"{f.name}'s memory is still mapped: {f.region}"
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    return True, (f"{f.name}'s {size_text(f.chunk_before.size)} mapping is gone (mincore and "
                  f"/proc/self/maps agree) after {f.counters['munmap_calls']} munmap; "
                  "break unchanged")


def _left_hole(walk, f):
    hole = _chunk_at(f.chunks, f.address)
    above = _chunk_at(f.chunks, walk.addresses["D"])
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    if hole is None or hole.in_use:
        return False, f"no free chunk is left at {f.name}'s address"
    if above is None or not above.in_use:
        return False, "D is not in use above the hole"
    where = f"in the {hole.bin} bin" if hole.bin else "outside any bin"
    return True, (f"break unchanged; {f.name}'s {size_text(hole.size)} chunk is free {where}, "
                  "below D still in use")


def _reuses_hole(walk, f):
    old = walk.addresses.get("B")
    if f.address != old:
        return False, f"{f.name} is at {f.address:#x}, not at B's {old:#x}"
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    return True, f"{f.name} = {f.address:#x}, B's own address; break unchanged"


def _trimmed(walk, f):
    threshold = introspect.stats().trim_threshold
    # The free space the merge makes: from the start of the hole below D up to the end
    # of the top chunk, as the heap stood just before the free.
    hole = _chunk_at(f.chunks_before, walk.addresses["B"])
    top = next((c for c in f.chunks_before if c.kind == "top"), None)
    if hole is None or hole.in_use or top is None:
        return False, "before free(D) there was no free hole below D, or no top chunk"
    merged = top.address + top.size - hole.address
    moved = f.break_after - f.break_before
    if merged <= threshold:
        return False, (f"the merged free top is {size_text(merged)}, not above "
                       f"{size_text(threshold)}")
    if moved >= 0 or f.counters["trims"] != 1:
        return False, f"no trim: {_break_moved(f)}"
    in_use = [c for c in f.chunks if c.in_use]
    if [c.mem for c in in_use] != [walk.addresses["A"]]:
        return False, "more than A is left in use after the trim"
    return True, (f"B, D and the top merged into {size_text(merged)} of free top (over "
                  f"{size_text(threshold)}): trimmed, break -{size_text(-moved)}; only A is "
                  "left in use")


# ---- the steps, by number ------------------------------------------------------------------------

STEPS: Dict[int, Tuple[str, str, Callable[[_Scene], _Outcome]]] = {
    0: ("the process layout", "layout", _layout),
    1: ("the seeds' malloc walk-through", "walkthrough", _walkthrough),
    2: ("virtual before physical", "virtual", _virtual_first),
    3: ("why an mmap threshold", "threshold", _why_threshold),
    4: ("the memory hole and malloc_trim", "hole", _memory_hole),
    5: ("major faults", "major_faults", _major_faults),
    6: ("virtually contiguous, physically scattered", "frames", _scattered),
}
