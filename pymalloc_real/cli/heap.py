"""`pymalloc-real heap [PID]`: a heap you can read (pwndbg's heap, bins and
vis_heap_chunks in one): without PID, a known sequence of operations (``--ops``) done
in this process on our core, then every chunk, the bins, top, the break and the mapped
chunks, and optionally a hexdump split at chunk boundaries. The text is
``pymalloc_real.heapview.render``'s, the same as ``prm.show()``. With PID, a running
program on pymalloc_real, copied from outside in one consistent snapshot
(``pymalloc_real.live``): its arenas, segments' chunk walks, mapped chunks, bins and
ledger (``live.text``'s layout, which also names the process and how the copy went).
"""
import dataclasses
import json

from .. import heapview, introspect, live
from .errors import UsageError


def add_parser(commands):
    parser = commands.add_parser(
        "heap", help="the heap as text: chunks, flags, bins, top, the break, a hexdump",
        description="Do a sequence of malloc/free operations on our allocator in this "
                    "process (--ops), then print its heap: every chunk with its address, "
                    "size, flags (P PREV_INUSE, M IS_MMAPPED, A NON_MAIN_ARENA), state and "
                    "bin; the bins by kind; top, the break and the mapped chunks; the "
                    "ledger; with --hexdump, memory split at chunk boundaries. Blocks are "
                    "numbered from 0 in the order of their malloc; live ones are named "
                    "[N] in the table. Exit status: 0, or 2 on an error.")
    parser.add_argument("pid", nargs="?", type=int,
                        help="a running program on pymalloc_real (the LD_PRELOAD library or "
                             "the Python extension): its heap, copied without stopping it")
    parser.add_argument("--all", action="store_true", dest="every_chunk",
                        help="with PID: one line per chunk (default: runs of identical "
                             "chunks share a line)")
    parser.add_argument("--json", action="store_true",
                        help="with PID: print JSON instead of text")
    parser.add_argument("--ops", default=heapview.DEFAULT_OPS, metavar="OPS",
                        help=f"{heapview.OPS_SYNTAX} (default: {heapview.DEFAULT_OPS!r}, "
                             "which fills every kind of bin)")
    parser.add_argument("--relative", action="store_true",
                        help="addresses as region+offset (heap+0x40, map0+0x10): the same "
                             "text on every run, whatever ASLR does")
    parser.add_argument("--hexdump", metavar="N[:LEN]|0xADDR:LEN",
                        help="dump block N's chunk (or LEN bytes from its start, into the "
                             "chunks after it), or LEN bytes from address ADDR, split at "
                             f"chunk boundaries (LEN at most {heapview.HEXDUMP_MAX})")
    parser.add_argument("--no-ledger", action="store_true",
                        help="leave out the ledger line (it asks mincore about every chunk)")
    parser.set_defaults(run=_heap)


def _heap(args):
    if args.pid is not None:
        return _remote_heap(args)
    if args.every_chunk or args.json:
        raise UsageError("--all and --json apply to another process's heap: give its PID")
    hexdump_spec = _hexdump_spec(args.hexdump)          # a mistake shows before any work
    blocks = heapview.run_ops(args.ops)
    names = {block.address: f"[{number}]" for number, block in enumerate(blocks)
             if block is not None and not block.freed}
    hexdump = hexdump_spec
    if isinstance(hexdump_spec, tuple) and hexdump_spec[0] == "block":
        hexdump = _block_range(blocks, *hexdump_spec[1:])
    print(heapview.heap_view(relative=args.relative, hexdump=hexdump, names=names,
                             ledger=not args.no_ledger))
    return 0


def _block_range(blocks, number, length):
    """(chunk address, length) of block ``number``'s chunk, live or still in a bin;
    ``length`` None for the whole chunk."""
    if number >= len(blocks) or blocks[number] is None:
        raise heapview.HeapViewError(f"--hexdump {number}: the operations made blocks "
                                f"0 .. {len(blocks) - 1}")
    chunk = introspect.chunk_of(blocks[number].address)
    if chunk is None:
        raise heapview.HeapViewError(f"--hexdump {number}: block {number} was freed and its chunk "
                                "merged into another")
    return chunk.address, chunk.size if length is None else length


def _hexdump_spec(text):
    """--hexdump's argument: ("block", N, LEN or None) for N[:LEN], (address, length) for
    0xADDR:LEN, or None."""
    if text is None:
        return None
    start, colon, length = text.partition(":")
    try:
        size = int(length, 0) if colon else None
        spec = ("block", int(start), size) if start.isdigit() else \
            (int(start, 16), size) if start.lower().startswith("0x") and colon else None
    except ValueError:
        spec = None
    if spec is None:
        raise heapview.HeapViewError(f"--hexdump {text!r}: expected N or N:LEN (block N's "
                                     "chunk, or LEN bytes from it) or 0xADDR:LEN")
    if size is not None and not 0 < size <= heapview.HEXDUMP_MAX:
        raise heapview.HeapViewError(f"--hexdump {text!r}: LEN must be 1 .. "
                                     f"{heapview.HEXDUMP_MAX}")
    return spec


def _remote_heap(args):
    """`heap PID`: another process's heap, from one consistent snapshot."""
    if args.hexdump is not None or args.ops != heapview.DEFAULT_OPS or args.relative:
        raise UsageError("--ops, --hexdump and --relative apply to this process's heap: "
                         "leave out the PID")
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
    return 0
