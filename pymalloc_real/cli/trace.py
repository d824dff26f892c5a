"""`pymalloc-real trace -- CMD`: a command's allocation calls recorded into a trace file,
and its summary.
"""


import argparse
import dataclasses
import json
import os
import sys

from .. import trace as tracing
from .text import OPTION_HELP, command_argv


# ---- trace ----------------------------------------------------------------------------------

def add_parser(commands):
    parser = commands.add_parser(
        "trace", help="record a command's allocation calls into a trace file",
        description="Run CMD under pymalloc_real's preload library with trace= and save "
                    "the command's allocation calls (malloc, free, realloc, calloc, "
                    "memalign & co, with object ids, sizes, alignments and threads) to FILE "
                    "in the compact binary form (or text with --text). The command's "
                    "output passes through; a one-line summary goes to stderr (--json: a "
                    "JSON summary on stdout). Exit status: the command's, 2 on an error.")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the trace")
    parser.add_argument("--text", action="store_true", help="write the text form")
    parser.add_argument("--largest", action="store_true",
                        help="save the trace of the process with the most operations among "
                             "all the command started (gcc: cc1), not the command's own")
    parser.add_argument("--stacks", choices=("sampled", "all", "off"),
                        help="call stacks: sampled by bytes allocated (the default, one per "
                             "--sample bytes on average), every allocation's, or none")
    parser.add_argument("--sample", metavar="BYTES",
                        help="mean bytes between sampled stacks (default 512K)")
    parser.add_argument("--sites", type=int, default=0, metavar="N",
                        help="also print the top N call sites by peak bytes")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help=OPTION_HELP)
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="kill the command (SIGKILL) when it runs longer")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command and its arguments, after --")
    parser.set_defaults(run=_trace)


def _trace(args):
    argv = command_argv(args)
    recording = tracing.record_run(argv, options=",".join(args.option) or None,
                                   timeout=args.timeout, capture=args.json,
                                   stacks=args.stacks, sample=args.sample)
    chosen = recording.largest() if args.largest else recording.trace
    if chosen is None or not len(chosen):
        raise tracing.TraceError(tracing.why_empty(argv, recording.report,
                                                   [recording.raw] if recording.raw else [])
                                 + "; --largest takes another process's")
    which = f"pid {recording.pid}: {' '.join(recording.command)[:200]}"
    sites = recording.sites()[:args.sites] if args.sites else []
    chosen.save(args.output, text=args.text)
    size = os.path.getsize(args.output)
    summary = chosen.summary()
    if args.json:
        json.dump(dict(dataclasses.asdict(summary), file=args.output, file_bytes=size,
                       bytes_per_op=size / max(len(chosen), 1),
                       description=chosen.description,
                       exit_status=recording.report.exit_status,
                       pid=recording.pid, command=recording.command,
                       wrappers=recording.wrappers,
                       sites=[dict(function=s.function, calls=s.calls, bytes=s.bytes,
                                   peak_bytes=s.peak_bytes, leaked_bytes=s.leaked_bytes,
                                   frames=[str(f) for f in s.frames]) for s in sites],
                       other_processes={pid: len(t) for pid, t in recording.others.items()}),
                  sys.stdout, indent=2)
        print()
    else:
        print(f"pymalloc-real trace: {summary.line()}; {args.output}: {size:,} bytes "
              f"({size / max(len(chosen), 1):.2f} bytes/op); recorded {which}",
              file=sys.stderr)
        for site in sites:
            print(f"  peak {site.peak_bytes:>12,}  leaked {site.leaked_bytes:>10,}  "
                  f"calls {site.calls:>9,}  {site}", file=sys.stderr)
    return recording.report.shell_status
