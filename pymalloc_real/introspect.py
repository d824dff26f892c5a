"""Looking inside the heap without disturbing it: statistics, chunks, bins, arenas,
segments, and the whole-heap integrity check.

The C core fills plain structs under its locks; this module turns them into frozen
dataclasses. Field meanings are documented once, in ``csrc/core/prm.h``.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from ._core import ffi, lib
from .errors import HeapCorruption
from .reprs import readable

__all__ = ["HeapStats", "Chunk", "BinEntry", "Bins", "Arena", "Segment", "Ledger",
           "stats", "chunks", "bins", "arenas", "segments", "check", "chunk_of", "ledger"]

_CHUNK_KINDS = {lib.PRM_KIND_CHUNK: "chunk", lib.PRM_KIND_TOP: "top",
                lib.PRM_KIND_FENCE: "fence", lib.PRM_KIND_MMAPPED: "mmapped"}
_BIN_KINDS = {lib.PRM_BIN_FAST: "fast", lib.PRM_BIN_UNSORTED: "unsorted",
              lib.PRM_BIN_SMALL: "small", lib.PRM_BIN_LARGE: "large"}
_SEGMENT_KINDS = {0: "brk", 1: "mmap", 2: "heap"}
CHUNK_HEADER = 16       # prev_size and size words: memory starts this far into a chunk


def _struct_fields(ctype):
    return [name for name, _ in ffi.typeof(ctype).fields if not name.endswith("_")]


def _dataclass_from_struct(name, ctype, doc):
    cls = dataclasses.make_dataclass(name, [(f, int) for f in _struct_fields(ctype)], frozen=True)
    cls.__doc__ = doc
    cls.__module__ = __name__
    return readable(cls)


HeapStats = _dataclass_from_struct("HeapStats", "prm_stats", """\
Allocator statistics: glibc's mallinfo2 fields (arena, ordblks, smblks, hblks, hblkhd,
usmblks, fsmblks, uordblks, fordblks, keepcost), the core's accounting (in_use_bytes
counts every chunk handed out and not freed, mmapped ones included), the parameters
in force, and the kernel layer's syscall counters. Each field is described in
csrc/core/prm.h (struct prm_stats).""")

Arena = _dataclass_from_struct("Arena", "prm_arena_info", """\
One arena's summary: its top chunk, the memory it holds from the OS, what is in use
and what is free. See csrc/core/prm.h (struct prm_arena_info).""")


_LedgerFields = _dataclass_from_struct("_LedgerFields", "prm_ledger_info", "")


class Ledger(_LedgerFields):
    """Where every byte of the allocator is, tcmalloc-style, and how much of it is still
    in RAM (mincore): live in use, free in bins, fast bins and top, overhead, mmapped,
    and what has been given back to the OS. It answers the usual questions about RSS:
    a leak shows as in_use growing; fragmentation as free bytes that stay resident;
    memory simply not returned as free resident bytes that malloc_trim would release.
    Fields are described in csrc/core/prm.h (struct prm_ledger_info)."""

    @property
    def free_bytes(self):
        return self.free_binned_bytes + self.free_fast_bytes + self.top_bytes

    @property
    def free_resident(self):
        """Free memory still occupying RAM: what malloc_trim could give back."""
        return self.free_binned_resident + self.free_fast_resident + self.top_resident

    @property
    def total_bytes(self):
        """Everything the allocator holds from the OS: heap segments and mappings."""
        return self.heap_bytes + self.mmapped_bytes

    @property
    def resident_bytes(self):
        return self.in_use_resident + self.free_resident + self.mmapped_resident

    def as_dict(self):
        out = dataclasses.asdict(self)
        out.update(free_bytes=self.free_bytes, free_resident=self.free_resident,
                   total_bytes=self.total_bytes, resident_bytes=self.resident_bytes)
        return out

    def as_text(self):
        """The ledger as a small table for people."""
        rows = [
            ("in use (heap)", self.in_use_bytes, self.in_use_resident),
            ("in use (mmapped)", self.mmapped_in_use_bytes, self.mmapped_resident),
            ("free in bins", self.free_binned_bytes, self.free_binned_resident),
            ("free in fast bins", self.free_fast_bytes, self.free_fast_resident),
            ("free in top", self.top_bytes, self.top_resident),
            ("overhead", self.overhead_bytes + self.mmapped_bytes - self.mmapped_in_use_bytes, None),
        ]
        lines = [f"{'':20s} {'bytes':>14s} {'resident':>14s}"]
        lines += [f"{name:20s} {size:14,d} {'' if res is None else format(res, ','):>14s}"
                  for name, size, res in rows]
        lines = [line.rstrip() for line in lines]
        lines.append(f"{'total held':20s} {self.total_bytes:14,d} {self.resident_bytes:14,d}")
        lines.append(f"given back so far: {self.released_by_trim:,d} by lowering the break, "
                     f"{self.released_by_munmap:,d} by munmap, "
                     f"{self.released_by_discard:,d} by MADV_DONTNEED")
        return "\n".join(lines)


@readable
@dataclass(frozen=True)
class Segment:
    """A contiguous run of memory an arena carves chunks from."""
    start: int          # first byte obtained from the OS
    end: int            # one past the last byte
    kind: str           # "brk"; "mmap" when the kernel refused to move the break; "heap"
                        # for the 64 MiB-aligned heaps of non-main arenas
    serial: int         # creation order within the arena
    arena: int
    holds_top: bool

    @property
    def size(self):
        return self.end - self.start


@dataclass(frozen=True)
class Chunk:
    """One chunk, as the boundary tags and the bins describe it."""
    address: int            # the chunk header; the user's memory starts 16 bytes later
    size: int               # chunk size, flag bits removed
    kind: str               # "chunk", "top", "fence" or "mmapped"
    in_use: bool            # handed out and not freed (fast-bin chunks count as free)
    prev_inuse: bool        # the P bit
    mmapped: bool           # the M bit
    non_main_arena: bool    # the A bit
    bin: Optional[str]      # "fast", "unsorted", "small", "large" or None
    bin_index: Optional[int]
    arena: int              # -1 for mmapped chunks
    segment: int            # segment serial, -1 for mmapped chunks
    mapping_start: int = 0  # mmapped chunks: their whole mapping, header included
    mapping_end: int = 0

    @property
    def mem(self):
        """The address malloc returned for this chunk."""
        return self.address + CHUNK_HEADER

    @property
    def flags(self):
        """The flag bits as text: 'P', 'M', 'A' or '-' for each."""
        return ("P" if self.prev_inuse else "-") + ("M" if self.mmapped else "-") + \
               ("A" if self.non_main_arena else "-")

    def __repr__(self):
        state = "in use" if self.in_use else self.kind if self.kind in ("top", "fence") else \
            f"free in {self.bin}[{self.bin_index}]" if self.bin else "free"
        kind = "" if self.kind in ("chunk", "top", "fence") else f" {self.kind}"
        place = f"mapping {self.mapping_start:#x}-{self.mapping_end:#x}" if self.mmapped \
            else f"arena {self.arena}"
        return f"Chunk({self.address:#x}, size={self.size:#x}, {self.flags}{kind}, {state}, {place})"


@dataclass(frozen=True)
class BinEntry:
    """A free chunk as one bin lists it."""
    kind: str               # "fast", "unsorted", "small" or "large"
    index: int              # fast-bin index, or bin number 1..126
    address: int
    size: int
    arena: int = 0          # the arena whose bin it is

    def __repr__(self):
        return (f"BinEntry({self.kind}[{self.index}], {self.address:#x}, size={self.size:#x}, "
                f"arena {self.arena})")


@dataclass(frozen=True)
class Bins:
    """The contents of every bin of every arena (each entry names its arena), each list
    from the bin's front."""
    fast: Dict[int, List[BinEntry]]
    unsorted: List[BinEntry]
    small: Dict[int, List[BinEntry]]
    large: Dict[int, List[BinEntry]]

    def entries(self):
        """Every entry of every bin, fast bins first."""
        out = [e for index in sorted(self.fast) for e in self.fast[index]]
        out += self.unsorted
        out += [e for index in sorted(self.small) for e in self.small[index]]
        out += [e for index in sorted(self.large) for e in self.large[index]]
        return out

    def find(self, address):
        """The entry for the chunk at ``address`` (chunk or memory address), or None."""
        for entry in self.entries():
            if address in (entry.address, entry.address + CHUNK_HEADER):
                return entry
        return None

    def __len__(self):
        return len(self.entries())

    def __repr__(self):
        def kind(lists):
            filled = [index for index in sorted(lists) if lists[index]]
            count = sum(len(lists[index]) for index in filled)
            shown = ", ".join(map(str, filled[:5])) + (", ..." if len(filled) > 5 else "")
            return f"{count}" + (f" in [{shown}]" if filled else "")
        return (f"Bins(fast={kind(self.fast)}, unsorted={len(self.unsorted)}, "
                f"small={kind(self.small)}, large={kind(self.large)})")

    @classmethod
    def from_entries(cls, entries):
        """Bins holding `entries` (BinEntry, in list order), grouped by kind and index."""
        fast, unsorted, small, large = {}, [], {}, {}
        for entry in entries:
            if entry.kind == "unsorted":
                unsorted.append(entry)
            else:
                {"fast": fast, "small": small, "large": large}[entry.kind] \
                    .setdefault(entry.index, []).append(entry)
        return cls(fast, unsorted, small, large)


# ---- collecting from C ------------------------------------------------------------------

def _walk(function, ctype, what):
    """Call a prm_walk_* function, growing the array until everything fits."""
    capacity = 256
    while True:
        array = ffi.new(f"{ctype}[]", capacity)
        count = function(array, capacity)
        if count < 0:
            raise _corruption(f"the heap could not be walked for {what}")
        if count <= capacity:
            return [array[i] for i in range(count)], array   # keep the array alive
        capacity = count + count // 4


def _corruption(context):
    message = ffi.new("char[]", 512)
    if lib.prm_check(message, 512) == lib.PRM_OK:
        return HeapCorruption(context)
    return HeapCorruption(context, ffi.string(message).decode("utf-8", "replace"))


def stats():
    """Statistics of the whole allocator (a HeapStats)."""
    raw = ffi.new("prm_stats *")
    lib.prm_get_stats(raw)
    return HeapStats(**{name: getattr(raw, name) for name in _struct_fields("prm_stats")})


def bins():
    """What every bin holds (a Bins)."""
    items, _keep = _walk(lib.prm_walk_bins, "prm_bin_entry", "bins()")
    return Bins.from_entries(BinEntry(_BIN_KINDS[item.kind], item.index, item.address,
                                      item.size, item.arena) for item in items)


def chunks():
    """Every chunk: each heap segment's chunks in address order, then the mmapped ones.
    Fast-bin chunks look in use to the boundary tags; here they are reported free,
    with the bin that holds them."""
    binned = {e.address: e for e in bins().entries()}
    items, _keep = _walk(lib.prm_walk_chunks, "prm_chunk_info", "chunks()")
    out = []
    for item in items:
        entry = binned.get(item.address)
        kind = _CHUNK_KINDS[item.kind]
        in_use = bool(item.tagged_in_use) and kind in ("chunk", "mmapped") and \
            (entry is None or entry.kind != "fast")
        out.append(Chunk(
            address=item.address, size=item.size, kind=kind, in_use=in_use,
            prev_inuse=bool(item.flags & 1), mmapped=bool(item.flags & 2),
            non_main_arena=bool(item.flags & 4),
            bin=entry.kind if entry else None, bin_index=entry.index if entry else None,
            arena=item.arena, segment=item.segment, mapping_start=item.mapping,
            mapping_end=item.mapping + item.mapping_length))
    out.sort(key=lambda c: (c.kind == "mmapped", c.address))
    return out


def chunk_of(block_or_address):
    """The Chunk holding a Block (or a memory address malloc returned), or None."""
    address = getattr(block_or_address, "address", block_or_address)
    if isinstance(address, bool) or not isinstance(address, int):
        raise TypeError(f"chunk_of: expected a Block or an int address, not "
                        f"{type(block_or_address).__name__}")
    for chunk in chunks():
        if chunk.mem == address:
            return chunk
    return None


def arenas():
    """A summary of each arena (a list of Arena)."""
    items, _keep = _walk(lib.prm_arenas, "prm_arena_info", "arenas()")
    names = _struct_fields("prm_arena_info")
    return [Arena(**{name: getattr(item, name) for name in names}) for item in items]


def segments():
    """The heap segments of every arena, oldest first."""
    items, _keep = _walk(lib.prm_walk_segments, "prm_segment_info", "segments()")
    out = [Segment(item.start, item.end, _SEGMENT_KINDS.get(item.kind, str(item.kind)),
                   item.serial, item.arena, bool(item.holds_top)) for item in items]
    return sorted(out, key=lambda s: (s.arena, s.serial))


def ledger():
    """Where every byte is (a Ledger): walks the heap and asks mincore about each page."""
    raw = ffi.new("prm_ledger_info *")
    if lib.prm_ledger(raw) != 0:
        raise _corruption("the heap could not be walked for ledger()")
    return Ledger(**{name: getattr(raw, name) for name in _struct_fields("prm_ledger_info")})


def check():
    """Validate the whole heap (boundary tags, bin links and sizes, fast bins, top, the
    mmapped chunks and the accounting). Raises HeapCorruption naming what is wrong."""
    message = ffi.new("char[]", 512)
    if lib.prm_check(message, 512) != lib.PRM_OK:
        raise HeapCorruption("heap check failed", ffi.string(message).decode("utf-8", "replace"))
