"""The heap as text, in the spirit of pwndbg's ``heap``, ``bins`` and ``vis_heap_chunks``:
every chunk with its address, size, flag bits, state and bin; the bins by kind; top and
the break; the mapped chunks; and a hexdump of a range split at chunk boundaries.

``render()`` is a pure function of the introspection dataclasses (``Chunk``, ``Bins``,
``Ledger``) and a ``HeapContext``, so any source of them (this process, or another
process's published heap) prints the same way. ``heap_view()`` collects them from this
process into a ``HeapView`` whose ``str`` is the text; ``show()`` prints it.

With ``relative=True`` every address is written as a region and an offset (``heap+0x40``,
``map0+0x10``), the qwords of a hexdump that point into our heap too: two runs of the
same operations then print the same text although ASLR moves the heap.
"""
from dataclasses import dataclass
from typing import Optional

from . import heap, introspect
from ._core import ffi, lib
from .errors import PymallocError
from .reprs import readable

__all__ = ["HeapContext", "HeapView", "render", "heap_view", "show", "run_ops", "HeapViewError",
           "DEFAULT_OPS"]

HEXDUMP_MAX = 64 * 1024     # bytes a hexdump shows at most
LIST_FIRST = 5              # entries shown of each bin list (then "N more")
RUN_SHOWN = 2               # identical chunks in a row shown before "N more like them"


class HeapViewError(PymallocError, ValueError):
    """A sequence of operations that does not parse or names a block that is not there,
    or a hexdump range that is not memory of our heap."""


@readable
@dataclass(frozen=True)
class HeapContext:
    """What the view tells beside chunks and bins; None where the source does not say."""
    brk: Optional[int] = None               # the program break
    tcache_count: Optional[int] = None      # chunks per size in the thread caches, 0: off
    remote_pending: Optional[int] = None    # chunks waiting on the remote-free stacks
    mmap_threshold: Optional[int] = None


# ---- addresses ---------------------------------------------------------------------------------

class _Regions:
    """Names an address by the region of our heap holding it: each segment (``heap``,
    ``heap.1``, ``arena1``, ...) from its first chunk, each mapped chunk (``map0``, ...)
    from its mapping."""

    def __init__(self, chunks, relative):
        self.relative = relative
        spans = {}
        for chunk in chunks:
            if chunk.kind == "mmapped":
                continue
            key = (chunk.arena, chunk.segment)
            start, end = spans.get(key, (chunk.address, chunk.address + chunk.size))
            spans[key] = (min(start, chunk.address), max(end, chunk.address + chunk.size))
        self.regions = []
        serials = {}
        for (arena, _segment), (start, end) in sorted(spans.items()):
            base = "heap" if arena == 0 else f"arena{arena}"
            nth = serials.setdefault(arena, 0)
            serials[arena] += 1
            self.regions.append((start, end, base if nth == 0 else f"{base}.{nth}"))
        mapped = sorted((c for c in chunks if c.kind == "mmapped"), key=lambda c: c.mapping_start)
        for nth, chunk in enumerate(mapped):
            start = chunk.mapping_start or chunk.address
            end = chunk.mapping_end or chunk.address + chunk.size
            self.regions.append((start, end, f"map{nth}"))

    def region(self, address):
        for start, end, label in self.regions:
            if start <= address <= end:
                return start, end, label
        return None

    def name(self, address):
        """The address as text: hex, or region+offset in relative mode."""
        found = self.region(address) if self.relative else None
        if found is None:
            return f"{address:#x}"
        return f"{found[2]}+{address - found[0]:#x}"

    def qword(self, value):
        """A qword of memory: a pointer into our heap named in relative mode."""
        found = self.region(value) if self.relative and value else None
        return f"{value:#018x}" if found is None else f"{found[2]}+{value - found[0]:#x}"


# ---- the pieces ----------------------------------------------------------------------------------

def _flags(chunk):
    return ("P" if chunk.prev_inuse else "-") + ("M" if chunk.mmapped else "-") + \
           ("A" if chunk.non_main_arena else "-")


def _bin_name(kind, index):
    return "unsorted" if kind == "unsorted" else f"{kind}[{index}]"


def _state(chunk):
    if chunk.kind in ("top", "fence"):
        return chunk.kind
    if chunk.in_use:
        return "in use"
    return f"free  {_bin_name(chunk.bin, chunk.bin_index)}" if chunk.bin else "free"


def _chunk_rows(chunks, names, regions):
    """(address, size, flags, state, name) per chunk; a run of identical unnamed chunks
    shows its first RUN_SHOWN and then one row saying how many more."""
    rows, run = [], []

    def flush():
        if len(run) <= RUN_SHOWN + 1:
            rows.extend(run)
        else:
            rows.extend(run[:RUN_SHOWN])
            rows.append(("", "", "", f"... {len(run) - RUN_SHOWN:,} more like these, the last "
                                     f"at {run[-1][0]}", ""))
        run.clear()

    for chunk in chunks:
        name = names.get(chunk.mem, "") if chunk.kind in ("chunk", "mmapped") else ""
        row = (regions.name(chunk.address), f"{chunk.size:#x}", _flags(chunk), _state(chunk), name)
        if run and (name or run[-1][4] or run[-1][1:4] != row[1:4]):
            flush()
        run.append(row)
    flush()
    return rows


def _table(rows, header):
    chunk_rows = [r for r in rows if r[0]]          # fold lines run across the columns
    if not any(r[-1] for r in chunk_rows):          # no block names: no block column
        header, rows = header[:-1], [r[:-1] for r in rows]
        chunk_rows = [r[:-1] for r in chunk_rows]
    widths = [max(len(str(r[i])) for r in chunk_rows + [header]) for i in range(len(header))]
    lines = ["  " + "  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip()]
    for row in rows:
        if row[0] == "" and row[3].startswith("..."):
            lines.append(f"  {'':<{widths[0]}}  {row[3]}")
            continue
        lines.append("  " + "  ".join(f"{str(c):<{w}}" for c, w in zip(row, widths)).rstrip())
    return lines


def _bin_lines(bins, context, regions):
    lines = ["bins"]
    if context.tcache_count is not None:
        lines.append("  tcache    " + ("off (tcache_count 0: this build keeps no thread caches, "
                                       "so nothing hides in them)" if context.tcache_count == 0
                                       else f"{context.tcache_count} chunks per size and thread "
                                            "(not walked: chunks in them count as in use)"))
    for kind, lists in (("fast", bins.fast), ("unsorted", {0: bins.unsorted}),
                        ("small", bins.small), ("large", bins.large)):
        filled = [(index, entries) for index, entries in sorted(lists.items()) if entries]
        if not filled:
            lines.append(f"  {kind:<9} empty")
        for nth, (index, entries) in enumerate(filled):
            label = kind if nth == 0 else ""
            where = "" if kind == "unsorted" else f"[{index}] "
            shown = " -> ".join(f"{regions.name(e.address)} ({e.size:#x})"
                                for e in entries[:LIST_FIRST])
            more = f" -> ... {len(entries) - LIST_FIRST:,} more" if len(entries) > LIST_FIRST else ""
            arenas = sorted({e.arena for e in entries})
            arena = "" if arenas == [0] else f"  (arena {', '.join(map(str, arenas))})"
            lines.append(f"  {label:<9} {where}{shown}{more}{arena}")
    if context.remote_pending is not None:
        lines.append(f"  {'remote':<9} {context.remote_pending:,} chunks waiting on the "
                     "remote-free stacks")
    return lines


def _top_lines(chunks, context, regions):
    lines = []
    for top in (c for c in chunks if c.kind == "top"):
        end = top.address + top.size
        lines.append(f"top        {regions.name(top.address)}, {top.size:#x} bytes "
                     f"(arena {top.arena}), ends at {regions.name(end)}")
    if context.brk is not None:
        ends = {c.address + c.size for c in chunks if c.kind == "top"}
        note = "the end of top" if context.brk in ends else \
            "not the end of any top: another allocator moved it, or it was never ours"
        lines.append(f"break      {regions.name(context.brk)} ({note})")
    mapped = [c for c in chunks if c.kind == "mmapped"]
    threshold = "" if context.mmap_threshold is None else \
        f"; mmap threshold {context.mmap_threshold:#x}"
    lines.append(f"mapped     {len(mapped)} chunk{'s' * (len(mapped) != 1)}, "
                 f"{sum(c.mapping_end - c.mapping_start for c in mapped):#x} bytes of mappings"
                 f"{threshold}")
    return lines


def _ledger_lines(ledger):
    return [f"ledger     in use {ledger.in_use_bytes:,} B in the heap and "
            f"{ledger.mmapped_in_use_bytes:,} B mapped; {ledger.total_bytes:,} B held",
            f"           free {ledger.free_binned_bytes:,} B in bins, "
            f"{ledger.free_fast_bytes:,} B in fast bins, {ledger.top_bytes:,} B in top"]


def _hexdump_lines(hexdump, chunks, names, regions):
    """16 bytes a row as two little-endian qwords and ASCII, a line naming each chunk
    where it starts; rows repeating the row above inside one chunk show as one "*" (as
    hexdump -C does)."""
    start, data = hexdump
    end = start + len(data)
    by_address = {c.address: c for c in chunks}
    lines = [f"hexdump {regions.name(start)} .. {regions.name(end)} ({len(data):,} bytes)"]
    previous = None
    for row in range(start - start % 16, end, 16):
        chunk = by_address.get(row)
        if chunk is not None:
            name = names.get(chunk.mem, "")
            lines.append(f"  -- chunk {regions.name(row)}: {chunk.size:#x} bytes, {_flags(chunk)}, "
                         f"{_state(chunk)}{'  ' + name if name else ''}")
            previous = None
        low, high = max(row, start), min(row + 16, end)
        padded = bytearray(16)          # bytes outside the range show as zeros
        padded[low - row:high - row] = data[low - start:high - start]
        if padded == previous:
            if lines[-1] != "  *":
                lines.append("  *")
            continue
        previous = padded
        words = [int.from_bytes(padded[i:i + 8], "little") for i in (0, 8)]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in padded)
        lines.append(f"  {regions.name(row):<16} {regions.qword(words[0]):<18} "
                     f"{regions.qword(words[1]):<18} {text}")
    return lines


def render(chunks, bins, ledger=None, context=None, names=None, relative=False, hexdump=None):
    """The heap as text. ``chunks`` (a list of Chunk), ``bins`` (a Bins), ``ledger`` (a
    Ledger or None), ``context`` (a HeapContext or None), ``names`` ({memory address:
    label} for blocks to name), ``relative`` (addresses as region+offset), ``hexdump``
    ((start address, bytes) or None)."""
    context = context or HeapContext()
    names = names or {}
    regions = _Regions(chunks, relative)
    heap_chunks = [c for c in chunks if c.kind != "mmapped"]
    mapped = [c for c in chunks if c.kind == "mmapped"]
    used = [c for c in chunks if c.in_use]
    free = [c for c in chunks if c.kind == "chunk" and not c.in_use]
    lines = [f"heap: {len(chunks):,} chunks, {len(used):,} in use "
             f"({sum(c.size for c in used):,} B), {len(free):,} free "
             f"({sum(c.size for c in free):,} B), {len(mapped)} mapped",
             "flags: P PREV_INUSE, M IS_MMAPPED, A NON_MAIN_ARENA", ""]
    header = ("address", "size", "flags", "state", "block")
    for start, end, label in regions.regions:
        inside = [c for c in heap_chunks if start <= c.address < end] if not label.startswith("map") \
            else [c for c in mapped if start <= c.address < end]
        if not label.startswith("map"):
            lines.append(f"{label}: {regions.name(start)} .. {regions.name(end)} "
                         f"(arena {inside[0].arena}, {end - start:#x} bytes)")
            lines += _table(_chunk_rows(inside, names, regions), header)
    if mapped:
        lines.append("mapped chunks")
        lines += _table(_chunk_rows(sorted(mapped, key=lambda c: c.mapping_start), names, regions),
                        header)
    lines.append("")
    lines += _bin_lines(bins, context, regions)
    lines.append("")
    lines += _top_lines(chunks, context, regions)
    if ledger is not None:
        lines += _ledger_lines(ledger)
    if hexdump is not None:
        lines.append("")
        lines += _hexdump_lines(hexdump, chunks, names, regions)
    return "\n".join(lines)


# ---- this process ---------------------------------------------------------------------------------

class HeapView:
    """This process's heap at one moment; ``str()`` is the text (``render``). The data
    stays available: ``chunks``, ``bins``, ``ledger``, ``context``."""

    def __init__(self, chunks, bins, ledger, context, names, relative, hexdump):
        self.chunks, self.bins, self.ledger, self.context = chunks, bins, ledger, context
        self.names, self.relative, self.hexdump = names, relative, hexdump

    def __str__(self):
        return render(self.chunks, self.bins, self.ledger, self.context, self.names,
                      self.relative, self.hexdump)

    def __repr__(self):
        used = sum(1 for c in self.chunks if c.in_use)
        return f"<HeapView {len(self.chunks):,} chunks, {used:,} in use, {len(self.bins):,} in bins>"


def _hexdump_range(target, chunks):
    """(start, length) for a hexdump argument: (address, length), or a Block (its chunk,
    its first HEXDUMP_MAX bytes if it is larger)."""
    if isinstance(target, heap.Block):
        chunk = next((c for c in chunks if c.mem == target.address), None)
        if chunk is None:
            raise HeapViewError(f"hexdump: {target!r} is not a live chunk of our heap")
        return chunk.address, min(chunk.size, HEXDUMP_MAX)
    if not (isinstance(target, tuple) and len(target) == 2 and
            all(isinstance(v, int) and not isinstance(v, bool) for v in target)):
        raise TypeError(f"hexdump: expected a Block or an (address, length) tuple of ints, "
                        f"not {type(target).__name__}")
    start, length = target
    if not 0 < length <= HEXDUMP_MAX:
        raise HeapViewError(f"hexdump: length must be 1 .. {HEXDUMP_MAX}, got {length}")
    return start, length


def _readable(start, length, chunks):
    """Is [start, start+length) inside one region of our heap (so memory we may read)?"""
    regions = _Regions(chunks, relative=True)
    found = regions.region(start)
    return found is not None and start + length <= found[1]


def heap_view(relative=False, hexdump=None, names=None, ledger=True):
    """This process's heap as a HeapView (``str()`` of it is the text). ``hexdump``: a
    Block or an (address, length) tuple inside our heap, shown split at chunk boundaries;
    ``names``: {Block or memory address: label}; ``relative``: addresses as region+offset;
    ``ledger``: include the ledger line (it asks mincore about every chunk)."""
    if not isinstance(relative, bool):
        raise TypeError(f"heap_view: relative must be a bool, not {type(relative).__name__}")
    labels = {}
    for key, label in (names or {}).items():
        address = getattr(key, "address", key)
        if isinstance(address, bool) or not isinstance(address, int):
            raise TypeError(f"heap_view: names maps Blocks or int addresses to labels, "
                            f"not {type(key).__name__}")
        labels[address] = str(label)
    chunks = introspect.chunks()
    bins = introspect.bins()
    stats = introspect.stats()
    context = HeapContext(brk=lib.prm_current_break(), tcache_count=stats.tcache_count,
                          remote_pending=stats.remote_pending, mmap_threshold=stats.mmap_threshold)
    dump = None
    if hexdump is not None:
        start, length = _hexdump_range(hexdump, chunks)
        if not _readable(start, length, chunks):
            raise HeapViewError(f"hexdump: {start:#x}+{length:#x} is not inside one segment or "
                             "mapped chunk of our heap")
        dump = (start, ffi.buffer(ffi.cast("char *", start), length)[:])
    return HeapView(chunks, bins, introspect.ledger() if ledger else None, context, labels,
                    relative, dump)


# ---- a known sequence of operations -------------------------------------------------------------

# Fills every kind of bin: blocks 2 and 6 freed, then a request no bin fits sorts them
# into a small and a large bin; 4 freed after stays unsorted, 0 goes to a fast bin; the
# 24-byte blocks between keep them from merging; 8 is a mapped chunk; 1 holds text.
DEFAULT_OPS = ("m 24, m 24, m 200, m 24, m 1200, m 24, m 3000, m 24, m 200000, "
               "w 1 hello heap, f 2, f 6, m 4000, f 4, f 0")

OPS_SYNTAX = ("comma-separated operations: m SIZE (malloc, the next block number), f N (free "
              "block N), r N SIZE (realloc block N), w N TEXT (write TEXT into block N)")


def run_ops(text=DEFAULT_OPS):
    """Do ``text``'s operations (OPS_SYNTAX) on our heap; returns the blocks, numbered
    from 0 in the order of their malloc (a realloc'ed block keeps its number; a freed
    one stays in the list, freed)."""
    if not isinstance(text, str):
        raise TypeError(f"run_ops: expected a str of operations, not {type(text).__name__}")
    blocks = []
    for item in (part.strip() for part in text.split(",")):
        op, _, rest = item.partition(" ")
        words = rest.split(None, 1) if op == "w" else rest.split()
        shape = {"m": 1, "f": 1, "r": 2, "w": 2}.get(op)
        if shape is None or len(words) != shape or \
                not all(w.isdigit() for w in (words[:1] if op == "w" else words)):
            raise HeapViewError(f"bad operation {item!r}: expected {OPS_SYNTAX}")
        if op == "m":
            blocks.append(heap.malloc(int(words[0])))
            continue
        number = int(words[0])
        if number >= len(blocks):
            raise HeapViewError(f"bad operation {item!r}: there is no block {number} yet "
                           f"({len(blocks)} so far)")
        if op == "f":
            heap.free(blocks[number])
        elif op == "r":
            blocks[number] = heap.realloc(blocks[number], int(words[1]))
        else:
            data = words[1].encode()
            if len(data) > blocks[number].size:
                raise HeapViewError(f"bad operation {item!r}: {len(data)} bytes do not fit block "
                               f"{number}'s {blocks[number].size}")
            blocks[number].write(data)
    return blocks


def show(relative=False, hexdump=None, names=None, ledger=True):
    """Print this process's heap (see ``heap_view`` for the arguments)."""
    print(heap_view(relative=relative, hexdump=hexdump, names=names, ledger=ledger))
