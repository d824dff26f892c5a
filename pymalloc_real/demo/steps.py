"""The demo: the seed articles replayed on real memory, in seven steps.

0 the process layout; 1 the seeds' walk-through (A=malloc(30K) ... free(D)); 2 virtual
before physical; 3 why an mmap threshold; 4 the memory hole and malloc_trim; 5 major
faults; 6 virtually contiguous, physically scattered. Each step states the seeds'
prediction, does the experiment in this process with the real allocator and kernel,
and computes from what it observed whether the prediction held ("agrees"), did not
("DISAGREES") or cannot be tested on this machine ("n/a", with the reason). It also
records the program break, the page faults, the core's chunks and an address-space
diagram at the step's telling moment. Nothing here prints: the command line prints,
pictures.py draws. Steps 4 to 6 live in pages.py, the walk-through in walkthrough.py, the
records in records.py, the address-space diagram in the kernel wing (kernel/space.py).
"""
import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

from .. import heap, introspect
from ..kernel import procfs
from ..errors import PymallocError
from ..kernel.space import KiB, MiB, size_text
from .walkthrough import (SEED_THRESHOLD, _pages_spanned,
                          pin_seed_thresholds, seed_walkthrough)

from .records import (AGREES, DISAGREES, FAULT_SLACK, Chart, Step, _Outcome,
                      _Scene, _verdict)
from .pages import _major_faults, _memory_hole, _scattered

__all__ = ["STEPS", "run"]


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
_CHILD = ("import json, sys; from pymalloc_real.demo.walkthrough import glibc_default_walk; "
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
