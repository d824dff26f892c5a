"""`pymalloc-real compare -- CMD`: a command on several allocators side by side, with
interleaved repeats, medians, ranges and ratios to glibc.
"""


import argparse
import json
import sys

from .. import preload
from .tables import fit, markdown_argument
from .errors import non_negative_int, positive_float, positive_int
from .text import width, ALLOCATOR_HELP, OPTION_HELP, command_argv


def add_parser(commands):
    compare = commands.add_parser(
        "compare", help="run a command on several allocators, side by side",
        description="Run CMD on each allocator, REPEAT times, interleaved (each round starts "
                    "one allocator further along), and print a Markdown table of medians and "
                    "ranges of wall time, CPU time, peak RSS and minor faults, with ratios to "
                    "the baseline. Checks that every run exited 0 and printed the same "
                    "stdout. A peer that is not installed is reported as missing (`make "
                    "peers` installs them). Exit status: 0 when every run succeeded with the "
                    "same output, 1 otherwise, 2 on an error.")
    compare.add_argument("--allocators", default=",".join(preload.ALLOCATORS),
                         metavar="A,B,...", help=f"comma-separated; each one of "
                                                 f"{ALLOCATOR_HELP} (default: all five)")
    compare.add_argument("--repeat", "-n", type=positive_int, default=5, metavar="N",
                         help="runs per allocator (default 5)")
    compare.add_argument("--warmup", type=non_negative_int, default=0, metavar="N",
                         help="rounds run first and not counted (default 0)")
    compare.add_argument("--baseline", default=preload.GLIBC, metavar="NAME",
                         help="the allocator the ratios are to (default glibc)")
    compare.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                         help=OPTION_HELP)
    compare.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                         help="kill a run (SIGKILL) when it runs longer")
    compare.add_argument("--no-check-stdout", action="store_true",
                         help="do not require the same stdout from every run")
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    markdown_argument(compare)
    compare.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                         help="the command and its arguments, after --")
    compare.set_defaults(run=_compare)


def _compare(args):
    argv = command_argv(args)
    options = preload.parse_options(",".join(args.option))
    allocators = [name.strip() for name in args.allocators.split(",") if name.strip()]
    progress = _progress_line if sys.stderr.isatty() and not args.json else None
    comparison = preload.compare(argv, allocators=allocators, repeat=args.repeat,
                                 options=options or None, timeout=args.timeout,
                                 check_stdout=not args.no_check_stdout,
                                 baseline=args.baseline, warmup=args.warmup,
                                 progress=progress)
    for result in comparison.missing:
        # One unwrapped line, like the other errors: it holds a command to copy.
        print(f"pymalloc-real compare: {result.name} skipped: {result.missing}",
              file=sys.stderr)
    if args.json:
        json.dump(comparison.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(fit(comparison.table(), args.markdown), end="")
    return 0 if comparison.ok else 1


def _progress_line(done, total, allocator):
    """A counter on one terminal line, rewritten in place and cleared at the end."""
    text = f"compare: run {done + 1}/{total} ({allocator})" if done < total else ""
    sys.stderr.write(f"\r{text:<{width() - 1}}\r")
    sys.stderr.flush()
