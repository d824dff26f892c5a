"""`pymalloc-real top PID`: the counters of a running program on pymalloc_real (in use,
heap, mapped, RSS, faults, calls, size classes, arenas), refreshed in place until
Ctrl-C (status 130), or `--count N` / `--once` samples for scripts and tests.
"""
import dataclasses
import json
import sys
import time

from .. import live
from ..errors import PymallocError


def add_parser(commands):
    top = commands.add_parser(
        "top", help="a running program's allocator counters, refreshed",
        description="Refresh the allocator counters of a running program that uses "
                    "pymalloc_real (LD_PRELOAD library or the Python extension), read from "
                    "outside with process_vm_readv: nothing stops the program.")
    top.add_argument("pid", type=int, help="the process to look at")
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="time between samples (default 1)")
    top.add_argument("--count", type=int, default=0, metavar="N",
                     help="stop after N samples (default: until Ctrl-C)")
    top.add_argument("--once", action="store_true", help="one sample, then exit (--count 1)")
    top.add_argument("--json", action="store_true",
                     help="one JSON object per sample, one per line")
    top.set_defaults(run=run_top)


def _sample_json(view):
    return {"pid": view.process.pid, "command": view.process.command, "time": view.taken,
            "stats": dataclasses.asdict(view.stats()), "rss": view.counters.rss,
            "minor_faults": view.counters.minor_faults, "major_faults": view.counters.major_faults,
            "calls": view.report["calls"] if view.report else None,
            "size_classes": [dataclasses.asdict(c) for c in view.size_classes()],
            "arenas": [dataclasses.asdict(a) for a in view.arenas()]}


def run_top(args):
    """The `top` subcommand: sample, print, sleep, until the count or Ctrl-C."""
    count = 1 if args.once else args.count
    if count < 0 or args.interval <= 0:
        raise PymallocError("--count takes N >= 0 and --interval a positive number of seconds")
    clear = sys.stdout.isatty() and not args.json
    try:
        with live.attach(args.pid) as process:
            previous, sample = None, 0
            while True:
                view = process.snapshot()
                sample += 1
                if args.json:
                    print(json.dumps(_sample_json(view)), flush=True)
                else:
                    text = live.text.top_text(view, previous, sample,
                                              args.interval if count != 1 else None)
                    print(("\x1b[H\x1b[2J" if clear else ("\n" if sample > 1 else "")) + text,
                          flush=True)
                if count and sample >= count:
                    return 0
                previous = view
                time.sleep(args.interval)
    except KeyboardInterrupt:
        return 130
