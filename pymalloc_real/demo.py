"""The demo: the seed articles replayed on real memory, in seven steps.

0 the process layout; 1 the seeds' walk-through (A=malloc(30K) ... free(D)); 2 virtual
before physical; 3 why an mmap threshold; 4 the memory hole and malloc_trim; 5 major
faults; 6 virtually contiguous, physically scattered. Each step states the seeds'
prediction, does the experiment in this process with the real allocator and kernel,
and computes from what it observed whether the prediction held ("agrees"), did not
("DISAGREES") or cannot be tested on this machine ("n/a", with the reason). It also
records the program break, the page faults, the core's chunks and an address-space
diagram at the step's telling moment. Nothing here prints: cli.py prints, plots.py draws.
The walk-through itself lives in walkthrough.py, the address-space diagram in space.py.
"""
import dataclasses
import json
import mmap
import os
import subprocess
import sys
import tempfile
import time
from itertools import accumulate
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from . import heap, introspect, procfs
from .errors import PymallocError
from .glibc import reserve_glibc_slack
from .introspect import Chunk
from .space import KiB, MiB, Band, address_space, size_text
from .walkthrough import (SEED_THRESHOLD, Operation, _chunk_dicts, _pages_spanned,
                          pin_seed_thresholds, seed_walkthrough)

__all__ = ["Step", "Chart", "STEPS", "run", "AGREES", "DISAGREES", "NOT_APPLICABLE",
           "FAULT_SLACK"]

AGREES, DISAGREES, NOT_APPLICABLE = "agrees", "DISAGREES", "n/a"

# Between two readings of the fault counters the interpreter runs a little bytecode and
# builds the objects that hold the readings; it may fault a few pages of its own (a new
# arena page, a stack page). A count within this many faults of what the experiment
# predicts counts as agreeing. The experiments touch hundreds to thousands of pages, so
# this slack cannot hide a real disagreement.
FAULT_SLACK = 16


# ---- records ------------------------------------------------------------------------------

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


# The child's stdout is a data channel (one JSON document), not output for people.
_CHILD = ("import json, sys; from pymalloc_real.walkthrough import glibc_default_walk; "
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
        block.touch(0, half)
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
