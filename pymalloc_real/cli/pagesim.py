"""`pymalloc-real pagesim`: the page-replacement algorithms over a trace (or a command
run under valgrind's lackey), their fault counts as a table and a chart.
"""


import dataclasses
import importlib.util
import json
import os
import re
import shlex
import sys

from .. import pagesim
from .text import ProgressBar, names_list, wrap


# ---- pagesim -----------------------------------------------------------------------------------

def add_parser(commands):
    parser = commands.add_parser(
        "pagesim", help="page-replacement algorithms over a memory trace: faults by frames",
        usage="%(prog)s TRACE [options]\n       %(prog)s --record [--save FILE] [options] "
              "-- CMD [ARG ...]",
        description="Run the page-replacement algorithms of seed 001 (OPT, LRU, aging, NRU, "
                    "clock, second chance, FIFO) over TRACE for every frame count of --frames "
                    "and print the page faults as a Markdown table, with where FIFO shows "
                    "Belady's anomaly (more frames, more faults). TRACE is the output of "
                    "`valgrind --tool=lackey --trace-mem=yes` or a plain list of page numbers "
                    "(decimal or 0x-hex, a trailing w for a store). With --record, CMD is run "
                    "under lackey first (its output goes to stderr) and its trace saved. "
                    "Exit status: 0, or 2 on an error.")
    parser.add_argument("words", nargs="*", metavar="TRACE | -- CMD ...",
                        help="the trace file; with --record, the command after --")
    parser.add_argument("--record", action="store_true",
                        help="run CMD under valgrind's lackey and simulate its trace")
    parser.add_argument("--save", metavar="FILE",
                        help="where --record writes the trace (default pagesim-CMD.lackey)")
    parser.add_argument("--frames", default="1-64", metavar="RANGE",
                        help="frame counts: N, A-B, A-B:STEP, comma-separated (default 1-64)")
    parser.add_argument("--algorithms", default="all", metavar="A,B,...",
                        help=f"comma-separated, of {', '.join(pagesim.ALGORITHMS)} "
                             "(default all)")
    parser.add_argument("--format", choices=("auto", "lackey", "pages"), default="auto",
                        help="what TRACE holds (default: recognised from its first lines)")
    parser.add_argument("--page-size", type=int, default=pagesim.PAGE_SIZE, metavar="BYTES",
                        help="page size for lackey's addresses (default 4096)")
    parser.add_argument("--no-instructions", action="store_true",
                        help="leave out lackey's instruction fetches (I lines)")
    parser.add_argument("--tick", type=int, metavar="N",
                        help="references between R-bit clearings of NRU and aging "
                             "(default 4 x frames)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw faults against frames into this PNG (needs matplotlib)")
    parser.add_argument("--json", action="store_true",
                        help="print every run (faults, hits, evictions, write-backs) as JSON")
    parser.set_defaults(run=_pagesim)


def _pagesim(args):
    frames = _frame_counts(args.frames)
    algorithms = (pagesim.ALGORITHMS if args.algorithms == "all"
                  else names_list(args.algorithms))
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    recording = None
    if args.record:
        if not args.words:
            raise pagesim.PagesimError("no command given: pymalloc-real pagesim --record "
                                       "[OPTIONS] -- CMD [ARG ...]")
        path = args.save or f"pagesim-{os.path.basename(args.words[0])}.lackey"
        print(f"pymalloc-real pagesim: recording {shlex.join(args.words)} under valgrind "
              f"--tool=lackey into {path}", file=sys.stderr)
        # fd 2: the command's own output must not mix with the report on stdout.
        recording = pagesim.record(args.words, path, stdout=2)
        print(f"pymalloc-real pagesim: recorded pid {recording.pid}: {recording.recorded}",
              file=sys.stderr)
        if recording.exit_status != 0:
            print(f"pymalloc-real pagesim: {args.words[0]} exited with status "
                  f"{recording.exit_status}; simulating the trace it left", file=sys.stderr)
        trace_path, trace_format = path, "lackey"
    elif len(args.words) == 1:
        trace_path, trace_format = args.words[0], args.format
    else:
        raise pagesim.PagesimError("give one TRACE file, or --record -- CMD [ARG ...]")
    trace = pagesim.Trace.load(trace_path, trace_format, page_size=args.page_size,
                               instructions=not args.no_instructions)
    if recording:       # the plot's title names the program, not the file
        trace.description = f"{shlex.join(args.words)} under lackey"
    progress = ProgressBar("pagesim") if sys.stderr.isatty() else None
    table = pagesim.curve(trace, frames, algorithms, tick=args.tick, progress=progress)
    anomalies = table.anomalies() if "fifo" in table.algorithms else None
    picture = table.plot(args.plot) if args.plot else None
    if args.json:
        json.dump({"trace": {"path": trace_path, "references": len(trace),
                             "pages": trace.pages, "stores": trace.stores,
                             "page_size": trace.page_size,
                             "instructions": trace.page_size is not None
                             and not args.no_instructions},
                   "recording": dataclasses.asdict(recording) if recording else None,
                   **table.as_dict(),
                   "belady_anomalies": None if anomalies is None else
                   [dataclasses.asdict(a) for a in anomalies],
                   "plot": picture}, sys.stdout, indent=2)
        print()
        return 0
    source = ("a plain list of page numbers" if trace.page_size is None else
              f"lackey, {trace.page_size}-byte pages, instruction fetches "
              f"{'left out' if args.no_instructions else 'included'}")
    print(wrap(f"pymalloc-real pagesim: {trace_path} ({source})", ""))
    stores = f" ({trace.stores / len(trace):.1%})" if len(trace) else ""
    print(f"  {len(trace):,} references to {trace.pages:,} pages, {trace.stores:,} "
          f"stores{stores}")
    print()
    print("Page faults by frames (--json adds hits, evictions and write-backs):")
    print()
    print(table.markdown())
    if anomalies is not None:
        span = f"{min(frames)}-{max(frames)} frames"
        text = ("none for " + span if not anomalies else
                "; ".join(f"{a.frames} frames fault {a.faults:,} times, {a.fewer_frames} "
                          f"only {a.fewer_faults:,}" for a in anomalies))
        print(wrap(f"Belady's anomaly (FIFO): {text}.", ""))
    if picture:
        print(f"Plot: {picture}")
    return 0


_MOST_FRAME_COUNTS = 10_000     # one run per count and algorithm: beyond, a typo


def _frame_counts(text):
    """'1-64', '8', '1,2,4,8', '4-64:4' -> sorted frame counts."""
    counts = set()
    for item in names_list(text):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+))?", item)
        first, last, step = ((int(match[1]), int(match[2] or match[1]), int(match[3] or 1))
                             if match else (0, 0, 0))
        if first < 1 or last < first or step < 1:
            raise pagesim.PagesimError(f"--frames takes N, A-B or A-B:STEP with 1 <= A <= "
                                       f"B, comma-separated: {item!r}")
        counts.update(range(first, min(last, first + _MOST_FRAME_COUNTS * step) + 1, step))
        if len(counts) > _MOST_FRAME_COUNTS:
            raise pagesim.PagesimError(f"--frames: more than {_MOST_FRAME_COUNTS:,} frame "
                                       "counts; use a step (A-B:STEP)")
    if not counts:
        raise pagesim.PagesimError("--frames: no frame counts given")
    return sorted(counts)
