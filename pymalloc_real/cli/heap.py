"""`pymalloc-real heap PID`: the heap of a running program on pymalloc_real, chunk by
chunk, with its bins and its ledger, copied from outside in one consistent snapshot
(see pymalloc_real/live/). The in-process heap has `prm.show()`; this is another
process's.
"""
import dataclasses
import json

from .. import live


def add_parser(commands):
    heap = commands.add_parser(
        "heap", help="a running program's heap: chunks, bins, ledger",
        description="Print the chunk walk, the bins and the ledger of a running program "
                    "that uses pymalloc_real, copied with process_vm_readv in one consistent "
                    "snapshot (the program is not stopped).")
    heap.add_argument("pid", type=int, help="the process to look at")
    heap.add_argument("--all", action="store_true", dest="every_chunk",
                      help="one line per chunk (default: runs of identical chunks share a line)")
    heap.add_argument("--json", action="store_true", help="print JSON instead of text")
    heap.set_defaults(run=run_remote_heap)


def run_remote_heap(args):
    """The `heap PID` subcommand."""
    try:
        with live.attach(args.pid) as process:
            view = process.snapshot()
            if args.json:
                bins = view.bins()
                print(json.dumps({
                    "pid": process.pid, "command": process.command, "library": process.library,
                    "stats": dataclasses.asdict(view.stats()),
                    "arenas": [dataclasses.asdict(a) for a in view.arenas()],
                    "segments": [dataclasses.asdict(s) for s in view.segments()],
                    "chunks": [dataclasses.asdict(c) for c in view.chunks()],
                    "bins": [dataclasses.asdict(e) for e in bins.entries()],
                    "ledger": view.ledger().as_dict()}, indent=1))
            else:
                print(live.text.heap_text(view, args.every_chunk))
    except KeyboardInterrupt:
        return 130
    return 0
