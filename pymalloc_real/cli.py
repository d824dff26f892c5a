"""The ``pymalloc-real`` command: argument parsing and everything printed for people
(tables) and programs (``--json``). The only module of the package that prints.

Subcommands: ``demo`` (the default), the seeds' walk-through on real memory.
"""
import argparse
import json
import os
import sys
import textwrap

from . import __version__, procfs
from .demo import SEED_THRESHOLD, seed_walkthrough
from .errors import PymallocError

WIDTH = 100                 # everything printed fits a terminal this wide
LABEL = 11                  # width of the label column of a step's details
_INDENT = " " * (2 + LABEL)
_COUNTER_NAMES = {"brk_moves": "brk", "mmap_calls": "mmap", "munmap_calls": "munmap",
                  "trims": "trim"}


def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); return the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:      # --help, --version and usage errors stop here
        return exit.code
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and keep Python's flush at
        # exit from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (PymallocError, MemoryError, OSError) as error:
        print(f"pymalloc-real {args.command or 'demo'}: error: {error}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(
        prog="pymalloc-real",
        description="A real ptmalloc-style allocator on brk and mmap: see what malloc and "
                    "the kernel do. Without a subcommand, runs the demo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(run=_demo, json=False, command=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="replay the seeds' malloc walk-through on real memory",
        description="Replay the seeds' walk-through (A=malloc(30K), B=malloc(40K), "
                    "C=malloc(200K), D=malloc(100K), free(C), free(B), B2=malloc(40K), "
                    "free(B2), free(D)) with the real allocator in this process, and check "
                    "each of the seeds' predictions against the program break, the heap's "
                    "chunks, page faults and /proc/self/maps. Exit status: 0 if every "
                    "prediction held, 1 if one did not, 2 on an error.")
    demo.add_argument("--json", action="store_true",
                      help="print the step records as JSON instead of the report")
    demo.set_defaults(run=_demo)
    return parser


# ---- demo -------------------------------------------------------------------------------

def _demo(args):
    steps = seed_walkthrough()
    held = sum(step.held for step in steps)
    if args.json:
        json.dump({"version": __version__, "pid": os.getpid(),
                   "page_size": procfs.page_size(), "threshold": SEED_THRESHOLD,
                   "held": held, "total": len(steps),
                   "steps": [step.as_dict() for step in steps]}, sys.stdout, indent=2)
        print()
    else:
        _print_report(steps, held)
    return 0 if held == len(steps) else 1


def _print_report(steps, held):
    print(f"pymalloc-real demo: the seeds' malloc walk-through on real memory (pid {os.getpid()})")
    print(f"Pinned as in the seeds: mmap threshold {_k(SEED_THRESHOLD)}, trim threshold "
          f"{_k(SEED_THRESHOLD)}, no top pad. Page size {procfs.page_size()} B.")
    for number, step in enumerate(steps, 1):
        print()
        _print_step(number, len(steps), step)
    print()
    failed = [str(n) for n, step in enumerate(steps, 1) if not step.held]
    summary = f"{held} of {len(steps)} predictions held"
    if failed:
        summary += f"; DISAGREES at step{'s' if len(failed) > 1 else ''} {', '.join(failed)}"
    print(_wrap(summary + ".", ""))


def _print_step(number, total, step):
    verdict = "agrees" if step.held else "DISAGREES"
    title = f"[{number}/{total}] {step.operation} "
    print(f"{title:-<{WIDTH - len(verdict) - 1}} {verdict}")
    _detail("predicted", step.prediction)
    _detail("observed", step.reason)
    _detail("break", f"{step.break_before:#x} -> {step.break_after:#x}  "
                     f"({_delta(step.break_delta)})")
    where = "mmapped chunk" if step.mmapped else "heap chunk"
    _detail(step.block, f"{step.address:#x}, {where}, {step.size} B requested")
    touched = f" (touched {step.touched_pages} pages)" if step.touched_pages else ""
    counters = ", ".join(f"{_COUNTER_NAMES[k]} {v:+d}" for k, v in step.counters.items())
    _detail("kernel", f"faults {step.minor_faults:+d} minor, {step.major_faults:+d} major"
                      f"{touched}; {counters or 'no brk, mmap, munmap or trim'}")
    for line, text in enumerate(_chunk_lines(step)):
        _detail("chunks" if line == 0 else "", text)
    if step.heap_map:
        _detail("maps", step.heap_map)
    if step.mmapped:
        end = step.address + step.size
        _detail("", f"{step.block_map}  <- {step.block}" if step.block_map else
                f"nothing maps {step.address:#x}-{end:#x} any more ({step.block}'s memory)")


def _chunk_lines(step):
    """One line per chunk of our heap: which block it is, where, kind, size, state, flags."""
    names = {address: name for name, address in step.blocks.items()}   # B2 overrides B
    lines = []
    for chunk in step.chunks:
        name = names.get(chunk.mem, "") if chunk.kind in ("chunk", "mmapped") else ""
        state = "in use" if chunk.in_use else f"free, {chunk.bin} bin" if chunk.bin else "free"
        lines.append(f"{name:<3} {chunk.address:#x}  {chunk.kind:<7} {chunk.size:>8} B "
                     f"{'(' + _k(chunk.size) + ')':<10} {chunk.flags}  {state}")
    return lines


def _detail(label, text):
    print(_wrap(text, f"  {label:<{LABEL}}"))


def _wrap(text, first):
    return textwrap.fill(text, WIDTH, initial_indent=first,
                         subsequent_indent=_INDENT if first else "", break_on_hyphens=False)


def _k(n):
    """Bytes as KiB, the seeds' 'K'."""
    return f"{n / 1024:.1f}K".replace(".0K", "K")


def _delta(n):
    return "unchanged" if n == 0 else f"{n:+d} B, {'+' if n > 0 else '-'}{_k(abs(n))}"


if __name__ == "__main__":
    sys.exit(main())
