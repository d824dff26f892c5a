"""A consistent copy of another process's allocator, taken without stopping it.

What an arena's lock guards (the arena, its segments and every chunk header in them) is
copied between two reads of that lock's sequence counter (csrc/core/glue.h): an odd
value means the lock is held, a different value afterwards means somebody changed the
arena while we copied; either way the copy is thrown away and taken again. The
mmapped-chunk registry is copied the same way under its own lock. Usually the process
never waits for us: it only pays two plain stores per lock cycle it would take anyway.
A program that takes its locks so often that a few tries all fail is held still for
the length of one copy (freeze.py) and resumed; when a stopped thread holds a lock,
it is resumed, and the copy tried again a little later.

Pages the process never touched (or gave back) are not read at all (pagemap says they
are absent; they hold zeros), so looking never faults memory into the process and
never changes what its own ledger calls resident.
"""
import bisect
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .freeze import Frozen
from .remote import LiveViewError, UnmappedRead

__all__ = ["Snapshot", "ArenaImage", "SegmentImage", "MappedImage", "take_snapshot"]

ATTEMPTS = 8                   # copies of one lock's data before we hold the process still
FROZEN_ATTEMPTS = 50           # times we hold it still before we give up
SEGMENT_LIMIT = 1 << 16        # more segments than that: the copy is not a heap


@dataclass
class SegmentImage:
    address: int                # the prm_segment header
    raw_start: int
    end: int
    first: int                  # the first chunk
    kind: int
    serial: int
    data: bytes                 # [raw_start, end)
    present: bytes              # 1 per page present, from raw_start rounded down


@dataclass
class ArenaImage:
    address: int
    fields: Dict[str, int]      # the prm_arena members the live view reads
    raw: bytes                  # the whole struct (bins and fast bins are read from it)
    segments: List[SegmentImage]
    copies: int                 # attempts it took to get a consistent copy


@dataclass
class MappedImage:
    header: int                 # the mapping (its prm_mmap_header)
    length: int
    chunk: int
    size_word: int              # the chunk's size with its flag bits
    present: bytes              # 1 per page present, from the header


@dataclass
class Snapshot:
    """Everything the live view knows about the process at one moment."""
    pid: int
    taken: float                # time.time()
    params: Dict[str, int]
    os_counters: Dict[str, int]
    report: Optional[Dict[str, object]]     # the shim's call counters, None without stats=
    arenas: List[ArenaImage]
    registry: Dict[str, int]
    mapped: List[MappedImage]
    page: int
    _starts: List[int] = field(default_factory=list, repr=False)
    _segments: List[SegmentImage] = field(default_factory=list, repr=False)

    def __post_init__(self):
        segments = sorted((s for a in self.arenas for s in a.segments), key=lambda s: s.raw_start)
        self._segments = segments
        self._starts = [s.raw_start for s in segments]

    def segment_at(self, address) -> Optional[SegmentImage]:
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and address < self._segments[i].end:
            return self._segments[i]
        return None

    def u64(self, address):
        """The word at `address` in the copy of the heap; KeyError outside it."""
        seg = self.segment_at(address)
        if seg is None or address + 8 > seg.end:
            raise KeyError(address)
        return struct.unpack_from("<Q", seg.data, address - seg.raw_start)[0]


def _members(directory, struct_name, raw, names):
    """{member: int} of the little-endian integer members `names` of a struct copy."""
    out = {}
    for name in names:
        offset, size = directory.fields[f"{struct_name}.{name}"]
        out[name] = int.from_bytes(raw[offset:offset + size], "little")
    return out


_ARENA_MEMBERS = ("index", "corrupt", "abandoned", "attached_threads", "next", "remote_head",
                  "remote_frees", "top", "last_remainder", "segments", "segment_count",
                  "system_bytes", "max_system_bytes", "in_use_bytes", "in_use_chunks", "trims",
                  "consolidations", "segments_opened", "discards")
_SEGMENT_MEMBERS = ("older", "raw_start", "end", "first", "kind", "serial")
_REGISTRY_MEMBERS = ("broken", "count", "max_count", "mapped_bytes", "max_mapped_bytes",
                     "chunk_bytes")
_PARAMS = ("max_fast", "trim_threshold", "top_pad", "mmap_threshold", "n_mmaps_max",
           "no_dyn_threshold", "perturb_byte", "check_action", "canary", "arena_test",
           "arena_max", "tcache_count", "tcache_grow")
_SIGNED_PARAMS = ("n_mmaps_max", "perturb_byte", "check_action", "canary", "no_dyn_threshold",
                  "tcache_count", "tcache_grow")
# Allocator-wide counters kept in prm_state (the thread caches' events, the ownership
# map's leaves): stats() reports them beside the kernel layer's counters.
_STATE_COUNTERS = ("tcache_raises", "tcache_drains", "tcache_fills", "pagemap_leaves")


def _seq(memory, directory, lock_address):
    offset = directory.offset("prm_lock.seq")
    return int.from_bytes(memory.read(lock_address + offset, 4), "little")


class _Busy(Exception):
    """No consistent copy within the attempts: a lock was held or changed each time."""


def _consistently(memory, directory, address, lock_offset, copy, attempts):
    """copy(unchanged) between two even, equal reads of the sequence counter of the lock
    at address + lock_offset: (result, attempts it took), or _Busy. copy calls
    unchanged() between its reads, which gives up early (None) once the counter moved."""
    lock = address + lock_offset
    for attempt in range(1, attempts + 1):
        before = _seq(memory, directory, lock)
        if before % 2:
            continue

        def unchanged():
            return _seq(memory, directory, lock) == before

        try:
            result = copy(unchanged)
        except UnmappedRead:
            result = None       # a segment went away while we read: try again
        if result is not None and unchanged():
            return result, attempt
    raise _Busy()


def _copy_arena(memory, directory, address, unchanged):
    size = directory.size("prm_arena")
    raw = memory.read(address, size)
    fields = _members(directory, "prm_arena", raw, _ARENA_MEMBERS)
    segments, seg = [], fields["segments"]
    segment_size = directory.size("prm_segment")
    while seg and len(segments) < SEGMENT_LIMIT:
        header = _members(directory, "prm_segment", memory.read(seg, segment_size), _SEGMENT_MEMBERS)
        if not header["raw_start"] <= seg < header["end"] or not unchanged():
            return None         # read mid-update
        data, present = memory.read_pages(header["raw_start"], header["end"])
        segments.append(SegmentImage(seg, header["raw_start"], header["end"], header["first"],
                                     header["kind"], header["serial"], data, present))
        seg = header["older"]
    return raw, fields, segments


def _copy_registry(memory, directory, address, unchanged):
    raw = memory.read(address, directory.size("prm_mmap_registry"))
    fields = _members(directory, "prm_mmap_registry", raw, _REGISTRY_MEMBERS)
    head = address + directory.offset("prm_mmap_registry.list")
    list_offset = directory.offset("prm_mmap_registry.list")
    h = int.from_bytes(raw[list_offset:list_offset + 8], "little")
    header_size = directory.size("prm_mmap_header")
    mapped = []
    while not fields["broken"] and h != head:
        if len(mapped) > fields["count"] or not unchanged():
            return None         # more than it counts, or changed: read mid-update
        header = _members(directory, "prm_mmap_header", memory.read(h, header_size),
                          ("next", "length", "chunk"))
        size_word = memory.u64(header["chunk"] + directory.offset("prm_chunk.size"))
        present = memory.present_pages(h, h + header["length"])
        mapped.append(MappedImage(h, header["length"], header["chunk"], size_word, present))
        h = header["next"]
    return fields, mapped


def take_snapshot(memory, directory) -> Snapshot:
    """A consistent copy of every arena and of the mmapped-chunk registry: a few tries
    while the process runs, then with the process held still for each try."""
    try:
        return _take(memory, directory, ATTEMPTS)
    except _Busy:
        pass
    for attempt in range(FROZEN_ATTEMPTS):
        with Frozen(memory.pid):
            if _locks_free(memory, directory):
                try:
                    return _take(memory, directory, 1)
                except _Busy:
                    pass        # a stopped thread holds a lock: let it run on
        time.sleep(min(0.001 * (attempt + 1), 0.02))
    raise LiveViewError(f"process {memory.pid}: its allocator's locks were held every time "
                        f"it was looked at ({FROZEN_ATTEMPTS} times); try again")


def _locks_free(memory, d):
    """While the process is held still: is every arena lock and the registry's free?
    (Cheap: two small reads per arena, so a stop that cannot copy is short.)"""
    try:
        address = d.state + d.offset("prm_state.main_arena")
        seen = 0
        while address and seen < 4096:
            if _seq(memory, d, address + d.offset("prm_arena.lock")) % 2:
                return False
            address = memory.u64(address + d.offset("prm_arena.next"))
            seen += 1
        registry = d.state + d.offset("prm_state.mmapped") + d.offset("prm_mmap_registry.lock")
        return _seq(memory, d, registry) % 2 == 0
    except UnmappedRead:
        return False


def _take(memory, directory, attempts) -> Snapshot:
    d = directory
    state = d.state
    try:
        params_raw = memory.read(state + d.offset("prm_state.params"),
                                 max(d.offset(f"prm_params.{p}") + d.size(f"prm_params.{p}") for p in _PARAMS))
        params = _members(d, "prm_params", params_raw, _PARAMS)
        for name in _SIGNED_PARAMS:
            width = d.size(f"prm_params.{name}") * 8
            if params[name] >> (width - 1):
                params[name] -= 1 << width
        counters_raw = memory.read(d.os_counters, d.size("prm_os_counters"))
        counter_names = [n.split(".", 1)[1] for n in d.fields if n.startswith("prm_os_counters.")]
        os_counters = _members(d, "prm_os_counters", counters_raw, counter_names)
        for name in _STATE_COUNTERS:
            offset = d.offset(f"prm_state.{name}")
            os_counters[name] = int.from_bytes(memory.read(state + offset, d.size(f"prm_state.{name}")),
                                               "little")
        os_counters["pagemap_bytes"] = os_counters.pop("pagemap_leaves") * d.constant("PRM_PAGEMAP_LEAF")
        report = _copy_report(memory, d)

        arenas = []
        address = state + d.offset("prm_state.main_arena")
        lock_offset = d.offset("prm_arena.lock")
        while address and len(arenas) < 4096:
            (raw, fields, segments), copies = _consistently(
                memory, d, address, lock_offset, lambda unchanged, a=address: _copy_arena(memory, d, a, unchanged),
                attempts)
            if not fields["abandoned"]:
                arenas.append(ArenaImage(address, fields, raw, segments, copies))
            address = fields["next"]

        registry_address = state + d.offset("prm_state.mmapped")
        (registry, mapped), _ = _consistently(
            memory, d, registry_address, d.offset("prm_mmap_registry.lock"),
            lambda unchanged: _copy_registry(memory, d, registry_address, unchanged), attempts)
    except UnmappedRead:
        raise LiveViewError(f"process {memory.pid}: the allocator's state is not mapped where "
                            "its directory says (a library built differently?)") from None
    return Snapshot(memory.pid, time.time(), params, os_counters, report, arenas, registry,
                    mapped, memory.page)


def _copy_report(memory, d):
    """The shim's call counters (csrc/preload/preload.c), or None when they are not
    counted (PYMALLOC_REAL_OPTIONS without stats=) or there is no shim."""
    if not d.report or "report.calls" not in d.fields:
        return None
    end = max(offset + size for name, (offset, size) in d.fields.items() if name.startswith("report."))
    raw = memory.read(d.report, end)
    value = _members(d, "report", raw, ("enabled", "bytes_requested", "live_bytes", "peak_live_bytes"))
    if not value["enabled"]:
        return None
    offset, size = d.fields["report.calls"]
    counts = struct.unpack_from(f"<{size // 8}Q", raw, offset)
    value["calls"] = dict(zip(d.call_names(), counts))
    offset, size = d.fields["report.size_classes"]
    value["size_classes"] = list(struct.unpack_from(f"<{size // 8}Q", raw, offset))
    return value
