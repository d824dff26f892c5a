"""`pymalloc-real maps [PID]`: a process's address space grouped by kind, each region
annotated, with totals per kind.
"""


import dataclasses
import json
import os
import sys

from .. import live
from ..kernel import procfs
from ..kernel.space import size_text
from .text import wrap


# ---- maps -------------------------------------------------------------------------------------

def add_parser(commands):
    maps = commands.add_parser(
        "maps", help="a process's address space, grouped by kind, with totals",
        description="Print /proc/PID/maps (this process by default) grouped by kind (heap, "
                    "stack, anonymous, file, vdso, other), each region annotated, with "
                    "totals per kind.")
    maps.add_argument("pid", nargs="?", type=int, help="process id (default: this process)")
    maps.add_argument("--json", action="store_true", help="print JSON instead of the table")
    maps.set_defaults(run=_maps)


def _maps(args):
    own = args.pid is None or args.pid == os.getpid()
    try:
        regions = procfs.maps(None if own else args.pid)
    except FileNotFoundError:
        raise OSError(f"no process {args.pid}") from None
    except PermissionError:
        raise OSError(f"no permission to read /proc/{args.pid}/maps") from None
    if not own:
        regions = _mark_ours_remotely(args.pid, regions)
    totals = procfs.totals_by_kind(regions)
    brk = procfs.brk() if own else None
    pid = os.getpid() if own else args.pid
    heaps = [region for region in regions if region.kind == "heap"]
    notes = [_region_notes(region, brk, bool(heaps) and region is heaps[-1]) for region in regions]
    if args.json:
        json.dump({"pid": pid, "break": brk, "totals": totals,
                   "regions": [dict(dataclasses.asdict(r), size=r.size, notes=n)
                               for r, n in zip(regions, notes)]}, sys.stdout, indent=2)
        print()
        return 0
    print(f"/proc/{pid}/maps ({_command_name(pid)}): {len(regions)} regions, "
          f"{size_text(sum(r.size for r in regions))} mapped")
    for kind in procfs.KINDS:
        group = [(r, n) for r, n in zip(regions, notes) if r.kind == kind]
        if group:
            print()
            print(f"{kind}: {len(group)} region{'s' * (len(group) > 1)}, {size_text(totals[kind])}")
            for region, region_notes in group:
                _print_region(region, region_notes)
    print()
    text = ", ".join(f"{kind} {size_text(totals[kind])}" for kind in procfs.KINDS)
    print(wrap(f"totals: {text}; ours (pymalloc_real's heap and mmapped chunks) "
                f"{size_text(totals['ours'])}", ""))
    return 0


def _mark_ours_remotely(pid, regions):
    """Another process's regions with the parts that are pymalloc_real's marked, from a
    live snapshot of its allocator; unchanged when it does not use the library."""
    try:
        with live.attach(pid) as process:
            view = process.snapshot()
            ranges = [(s.start, s.end, "heap segment") for s in view.segments()]
            ranges += [(c.mapping_start, c.mapping_end, "mmapped chunk")
                       for c in view.chunks() if c.kind == "mmapped"]
    except live.LiveViewError:
        return regions
    return [dataclasses.replace(region, ours=tuple(
        (max(s, region.start), min(e, region.end), what)
        for s, e, what in ranges if s < region.end and e > region.start)) for region in regions]


def _print_region(region, notes):
    path = region.path if len(region.path) <= 48 else "..." + region.path[-45:]
    print(f"  {region.start:x}-{region.end:x} {size_text(region.size):>7} {region.perms} "
          f"{path}".rstrip())
    for note in notes:
        print(wrap(note, " " * 6, " " * 8))


def _region_notes(region, brk, top_of_heap):
    """What a maps line means: code or data of a file, the break (at the end of the
    highest [heap] line), the parts that are ours."""
    notes = []
    if region.kind == "file":
        notes.append("code (text)" if "x" in region.perms else
                     "data" if "w" in region.perms else "read-only data")
    if top_of_heap:
        notes.append("ends at the program break (rounded up to a page)" if brk is None else
                     f"the program break {brk:#x}")
    notes += [f"ours: {what} {start:#x}-{end:#x} ({size_text(end - start)})"
              for start, end, what in region.ours]
    return notes


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "?"
