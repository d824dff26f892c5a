"""`pymalloc-real demo`: the seed articles replayed on real memory, and
everything it prints: the header, each step with its observations, the walk-through's
operations and chunks, the address-space diagram, and the summary.
"""


import importlib.util
import json
import os
import sys

from .. import __version__, demo
from ..demo import AGREES, DISAGREES, NOT_APPLICABLE
from ..kernel import procfs
from ..kernel.space import size_text
from .errors import check_output_directory
from .text import delta, detail, width, wrap


_COUNTER_NAMES = {"brk_moves": "brk", "mmap_calls": "mmap", "munmap_calls": "munmap",
                  "trims": "trim"}


# ---- demo -----------------------------------------------------------------------------------

def add_parser(commands):
    steps = "; ".join(f"{n} {title}" for n, (title, _, _) in demo.STEPS.items())
    run = commands.add_parser(
        "demo", help="replay the seed articles on real memory, step by step",
        description=f"Replay the seed articles on real memory, in this process: {steps}. "
                    "Each step states the seeds' prediction and whether the real run agrees, "
                    "with the program break, the page faults, the core's chunks and the "
                    "address space around the heap. Exit status: 0 if every applicable "
                    "prediction held, 1 if one did not, 2 on an error.")
    run.add_argument("--step", type=int, choices=sorted(demo.STEPS), metavar="N",
                     help="run only step N (0 to %d)" % max(demo.STEPS))
    run.add_argument("--json", action="store_true",
                     help="print the steps as one JSON document instead of the report")
    run.add_argument("--plot", metavar="DIR",
                     help="also write one PNG per step into DIR (needs matplotlib)")
    run.set_defaults(run=_demo)


def _demo(args):
    """The demo: each step as it ends, then the summary."""
    if args.plot:
        check_output_directory(args.plot, "--plot")
    numbers = [args.step] if args.step is not None else sorted(demo.STEPS)
    # Fail before the run without matplotlib, but import it only after the run: loading
    # it grows the interpreter's heap and maps, and the experiments should not pay.
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    if not args.json:
        _print_header()
    steps = []
    for number in numbers:      # one at a time, so people see each step as it ends
        step = demo.run([number])[0]
        steps.append(step)
        if not args.json:
            _print_step(step)
    pictures = []
    if args.plot:
        from ..demo import pictures as drawing   # matplotlib: only now
        pictures = drawing.write_pictures(steps, args.plot)
    if args.json:
        json.dump(_demo_document(steps, pictures), sys.stdout, indent=2)
        print()
    else:
        _print_summary(steps, pictures)
    return 1 if any(step.verdict == DISAGREES for step in steps) else 0


def _demo_document(steps, pictures):
    verdicts = [step.verdict for step in steps]
    return {"version": __version__, "pid": os.getpid(), "page_size": procfs.page_size(),
            "thp": procfs.thp_setting(), "fault_slack": demo.FAULT_SLACK,
            "summary": {"agrees": verdicts.count(AGREES),
                        "disagrees": verdicts.count(DISAGREES),
                        "not_applicable": verdicts.count(NOT_APPLICABLE)},
            "steps": [step.as_dict() for step in steps], "pictures": pictures}


def _print_header():
    print(wrap(f"pymalloc-real demo: the seed articles replayed on real memory (pid "
               f"{os.getpid()})", ""))
    print(wrap(f"Page size {procfs.page_size()} B. Transparent huge pages: "
                f"{procfs.thp_setting()}; every block whose page faults are counted is marked "
                "MADV_NOHUGEPAGE, so one fault means one page. Fault counts may exceed a "
                f"prediction by up to {demo.FAULT_SLACK}: the interpreter's own pages.", ""))


def _print_step(step):
    print()
    title = f"== Step {step.number}: {step.title} "
    print(f"{title:=<{width() - len(step.verdict) - 1}} {step.verdict}")
    detail("predicted", step.prediction)
    detail("observed" if step.verdict != NOT_APPLICABLE else "why n/a", step.reason)
    for label, text in step.observations:
        detail(label, text)
    for number, operation in enumerate(step.operations, 1):
        _print_operation(number, len(step.operations), operation)
    if step.operations:
        print()
    detail("break", f"{step.break_before:#x} -> {step.break_after:#x}  "
                     f"({delta(step.break_after - step.break_before)})")
    detail("faults", f"{step.minor_faults:+d} minor, {step.major_faults:+d} major over the "
                      "whole step, the interpreter's own included")
    if not step.operations:     # the walk-through shows the chunks after each operation
        names = {address: name for name, address in step.names.items()}
        lines = _chunk_lines(step.chunks, names) or ["none: the core holds no memory"]
        for line, text in enumerate(lines):
            detail("chunks" if line == 0 else "", text)
    if step.space:
        detail("memory", f"{step.moment} (high addresses on top):")
        for line in _space_lines(step.space):
            print(line)


def _print_operation(number, total, op):
    print()
    title = f"  [{number}/{total}] {op.operation} "
    verdict = "agrees" if op.held else "DISAGREES"
    print(f"{title:-<{width() - len(verdict) - 1}} {verdict}")
    detail("predicted", op.prediction)
    detail("observed", op.reason)
    detail("break", f"{op.break_before:#x} -> {op.break_after:#x}  ({delta(op.break_delta)})")
    where = "mmapped chunk" if op.mmapped else "heap chunk"
    detail(op.block, f"{op.address:#x}, {where}, {op.size} B requested")
    touched = f" (touched {op.touched_pages} pages)" if op.touched_pages else ""
    counters = ", ".join(f"{_COUNTER_NAMES[k]} {v:+d}" for k, v in op.counters.items())
    detail("kernel", f"faults {op.minor_faults:+d} minor, {op.major_faults:+d} major"
                      f"{touched}; {counters or 'no brk, mmap, munmap or trim'}")
    names = {address: name for name, address in op.blocks.items()}     # B2 overrides B
    for line, text in enumerate(_chunk_lines(op.chunks, names)):
        detail("chunks" if line == 0 else "", text)
    if op.heap_map:
        detail("maps", op.heap_map)
    if op.mmapped:
        end = op.address + op.size
        detail("", f"{op.block_map}  <- {op.block}" if op.block_map else
                f"nothing maps {op.address:#x}-{end:#x} any more ({op.block}'s memory)")


def _chunk_lines(chunks, names):
    """One line per chunk of our heap (which block, where, kind, size, flags, state);
    a run of identical unnamed chunks is one line, "64 x"."""
    lines, previous, count = [], None, 0
    for chunk in chunks:
        name = names.get(chunk.mem, "") if chunk.kind in ("chunk", "mmapped") else ""
        state = "in use" if chunk.in_use else f"free, {chunk.bin} bin" if chunk.bin else "free"
        text = (f"{chunk.kind:<7} {chunk.size:>9} B {'(' + size_text(chunk.size) + ')':<9} "
                f"{chunk.flags}  {state}")
        if not name and previous == text:
            count += 1
            lines[-1] = f"{count:>2} x {'':16} {text}"
            continue
        previous, count = (None if name else text), 1
        lines.append(f"{name:<4} {chunk.address:#014x}  {text}")
    return lines


_AREAS = {"stack": "stack", "mapping": "mmap area", "heap": "heap", "program": "program"}


def _space_lines(bands):
    """The address-space diagram: one line per band, its notes below it, and the name
    of each area beside its first band."""
    spans = max(len(f"{band.start:x}-{band.end:x}") for band in bands)
    lines, area = [], None
    for band in bands:
        span = f"{band.start:x}-{band.end:x}"
        name = _AREAS[band.area] if band.area and band.area != area else ""
        area = band.area or area
        if band.kind == "gap":
            lines.append(f"  {'':11}{'~' * spans}  {band.label}, {size_text(band.end - band.start)}")
            continue
        lines.append(f"  {name:<11}{span:>{spans}} {size_text(band.mapped):>7} {band.perms:4} "
                     f"{band.label}"[:width()])
        lines += [wrap(note, " " * 15, " " * 17) for note in band.notes]
    return lines


def _print_summary(steps, pictures):
    print()
    verdicts = [step.verdict for step in steps]
    print(wrap("Summary: " + ", ".join(f"step {s.number} {s.verdict}" for s in steps) + ".", ""))
    disagree = [str(s.number) for s in steps if s.verdict == DISAGREES]
    line = (f"{verdicts.count(AGREES)} of {len(steps)} steps agree with the seeds, "
            f"{len(disagree)} disagree{' (step ' + ', '.join(disagree) + ')' if disagree else ''}, "
            f"{verdicts.count(NOT_APPLICABLE)} not applicable on this machine.")
    print(wrap(line, ""))
    if pictures:
        print(wrap("Pictures: " + ", ".join(pictures), ""))
