"""`pymalloc-real report -- CMD`: a command's memory in one self-contained HTML page
(summary, timeline, size classes, call sites, fragmentation, the heap at any moment, and
with --allocators the peers side by side); `--trace FILE` reports on a recorded trace.
"""


import argparse
import json
import os
import sys

from .text import OPTION_HELP, command_argv, names_list

DEFAULT_OUTPUT = "pymalloc-real-report.html"


def add_parser(commands):
    parser = commands.add_parser(
        "report", help="a command's memory as one self-contained HTML page",
        description="Run CMD on pymalloc_real's preload library, recording every "
                    "allocation call (with call stacks and a timeline where the recorder "
                    "gives them), replay the trace through the core to draw the heap at "
                    "any moment, and write one HTML file that opens without a network: "
                    "summary, timeline, size classes, call sites, fragmentation, the heap "
                    "map with a slider, and with --allocators the same command on other "
                    "allocators. The command's output passes through; one line goes to "
                    "stderr (--json: the numbers as JSON on stdout). Exit status: 0, or 2 "
                    "on an error (the command's own status is in the report).")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, metavar="FILE.html",
                        help=f"where to write the page (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--allocators", type=names_list, default=[], metavar="A,B,...",
                        help="also run the command on these (glibc, jemalloc, mimalloc, "
                             "tcmalloc, or library paths), beside pymalloc_real")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs per allocator for --allocators (default 3)")
    parser.add_argument("--trace", metavar="FILE",
                        help="report on this trace file instead of running a command "
                             "(no run numbers, no call sites)")
    parser.add_argument("--stacks", choices=("sampled", "all", "off"),
                        help="call stacks: sampled by bytes allocated (the recorder's "
                             "default; sites' numbers are estimates), all (exact, slower) "
                             "or off")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help=OPTION_HELP)
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="kill the command (SIGKILL) when it runs longer")
    parser.add_argument("--json", action="store_true",
                        help="print the report's numbers as JSON on stdout")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command and its arguments, after --")
    parser.set_defaults(run=_report)


def _report(args):
    from ..report import model     # here: the wing loads only when a report is made
    if not args.output.endswith((".html", ".htm")):
        raise model.ReportError(f"the output {args.output!r} must end in .html")
    if args.repeat < 1:
        raise model.ReportError(f"--repeat must be at least 1, not {args.repeat}")
    if args.trace:
        if args.cmd and args.cmd != ["--"]:
            raise model.ReportError("give either --trace FILE or -- CMD, not both")
        if not os.path.isfile(args.trace):
            raise model.ReportError(f"no trace file {args.trace!r}")
        result = model.from_trace(args.trace)
    else:
        result = model.report(command_argv(args), allocators=args.allocators,
                                  repeat=args.repeat, options=",".join(args.option) or None,
                                  timeout=args.timeout, capture=args.json,
                                  stacks=args.stacks)
    result.save_html(args.output)
    size = os.path.getsize(args.output)
    if args.json:
        json.dump(dict(result.as_dict(), file=args.output, file_bytes=size), sys.stdout,
                  indent=2)
        print()
    else:
        m = result.measures
        print(f"pymalloc-real report: {args.output} ({size / 1e6:.1f} MB): {m.ops:,} calls, "
              f"peak live {m.peak_live:,} bytes, leaked {m.leaked_bytes:,} bytes in "
              f"{m.leaked_objects:,} object(s)", file=sys.stderr)
    return 0
