"""The seeds' walk-through (A=malloc(30K) ... free(D)) replayed on real memory: each of
its nine operations with the seeds' prediction, what happened and the judge's verdict;
and the same walk with glibc's dynamic threshold left on, for a fresh process.
"""
import dataclasses
from dataclasses import dataclass
from typing import Dict, List, Optional

from .. import heap, introspect
from ..kernel import procfs
from .glibc import reserve_glibc_slack
from ..introspect import Chunk
from ..kernel.space import KiB, size_text
from ..reprs import readable

__all__ = ["Operation", "seed_walkthrough", "pin_seed_thresholds", "glibc_default_walk",
           "SEED_THRESHOLD"]

SEED_THRESHOLD = 128 * KiB      # the seeds' mmap and trim thresholds

# The core's counters a walk-through operation reports the change of: the system calls
# that move the break or map memory, and the trims that gave memory back.
_COUNTERS = ("brk_moves", "mmap_calls", "munmap_calls", "trims")


@readable
@dataclass(frozen=True)
class Operation:
    """One operation of the walk-through: the seeds' prediction and what happened."""
    operation: str              # e.g. "A = malloc(30K)" or "free(C)"
    block: str                  # the block allocated or freed: "A", "B", "C", "D", "B2"
    prediction: str             # the seeds' claim, in one sentence
    held: bool                  # whether the observations below bear the prediction out
    reason: str                 # the observed facts that decided ``held``
    address: int                # the block's address (what malloc returned)
    size: int                   # bytes requested
    mmapped: bool               # the block is (or was, for a free) an mmapped chunk
    break_before: int           # the program break just before the operation
    break_after: int            # and just after it
    minor_faults: int           # page faults during it, first touch of a new block
    major_faults: int           # included
    touched_pages: int          # pages of the new block it touched (0 for a free)
    counters: Dict[str, int]    # nonzero changes of the core's syscall and trim counters
    chunks: List[Chunk]         # our heap afterwards, as prm.chunks() walks it
    blocks: Dict[str, int]      # every block named so far -> its address, to label chunks
    heap_map: Optional[str]     # the /proc/self/maps line holding the break
    block_map: Optional[str]    # the maps line holding the block afterwards (None when
                                # nothing maps it any more); only for mmapped blocks

    @property
    def break_delta(self):
        return self.break_after - self.break_before

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["break_delta"] = self.break_delta
        out["chunks"] = _chunk_dicts(self.chunks)
        return out


def _chunk_dicts(chunks):
    return [dict(dataclasses.asdict(c), flags=c.flags, mem=c.mem) for c in chunks]


# ---- the walk-through --------------------------------------------------------------------------

def seed_walkthrough(scene=None) -> List[Operation]:
    """Replay the seeds' walk-through in this process; one Operation per operation.

    It pins the seeds' fixed world for the whole process (mmap and trim thresholds of
    128 KiB, no top pad: process-wide settings, as with glibc's mallopt) and gives
    glibc's own heap slack so the interpreter does not move the break meanwhile. The
    predictions assume a heap nobody used before, so run it in a fresh process.
    With a ``scene``, it snapshots the address space after D = malloc(100K).
    Everything it allocates is freed before it returns.
    """
    reserve_glibc_slack()
    pin_seed_thresholds()
    walk = _Walk(scene)
    try:
        walk.malloc("A", 30 * KiB, "Below the 128K mmap threshold, so malloc pushes the "
                    "break up (brk) by about 30K.", _pushes_break)
        walk.malloc("B", 40 * KiB, "Also below the threshold: the break moves up by about "
                    "40K more.", _pushes_break)
        walk.malloc("C", 200 * KiB, "Above the 128K mmap threshold: C gets a mapping of "
                    "its own between heap and stack (mmap), and the break stays.",
                    _own_mapping)
        walk.malloc("D", 100 * KiB, "Below the threshold: the break moves up by about "
                    "100K.", _pushes_break)
        walk.free("C", "C was mmapped, so free unmaps it at once: its memory goes "
                  "straight back to the kernel.", _unmapped)
        walk.free("B", "B becomes a hole: D above it is in use, so the break cannot move "
                  "back and B's memory stays with the process.", _left_hole)
        walk.malloc("B2", 40 * KiB, "A new 40K request reuses B's hole: malloc returns "
                    "B's address and the break stays.", _reuses_hole)
        walk.free("B2", "The hole is free again and the break stays, since D above it is "
                  "still in use.", _left_hole)
        walk.free("D", "D merges with the free B below and the top above into 140K+ of "
                  "free top; that exceeds the 128K trim threshold, so the heap is trimmed "
                  "and the break moves down.", _trimmed)
    finally:
        walk.free_all()
    return walk.operations


def pin_seed_thresholds():
    """The seeds' fixed world: mmap and trim thresholds of 128 KiB and no top pad, so
    every heap growth moves the break by just what the request needs. As with glibc,
    fixing a threshold also turns off the dynamic one, for the whole process."""
    heap.mallopt(heap.M_MMAP_THRESHOLD, SEED_THRESHOLD)
    heap.mallopt(heap.M_TRIM_THRESHOLD, SEED_THRESHOLD)
    heap.mallopt(heap.M_TOP_PAD, 0)


@dataclass
class _Facts:
    """What a judge sees of an operation besides the walk itself."""
    name: str
    address: int
    size: int
    chunk_before: Optional[Chunk]    # the block's chunk before the operation (frees only)
    chunk: Optional[Chunk]           # its chunk afterwards, if it still has one
    chunks_before: List[Chunk]
    chunks: List[Chunk]
    break_before: int
    break_after: int
    counters: Dict[str, int]
    region: Optional[procfs.MapRegion]   # the mapping holding the block afterwards


class _Walk:
    """The blocks of the walk-through by name, and the operations recorded so far."""

    def __init__(self, scene):
        self.scene = scene
        self.live: Dict[str, heap.Block] = {}
        self.addresses: Dict[str, int] = {}
        self.operations: List[Operation] = []
        self.page = procfs.page_size()

    def malloc(self, name, size, prediction, judge):
        def allocate():
            block = heap.malloc(size)
            block.touch()           # first touch: the page faults show up in this operation
            return block
        self._record(f"{name} = malloc({size // KiB}K)", name, prediction, judge, allocate)
        if name == "D" and self.scene is not None:
            self.scene.snapshot("after D = malloc(100K), while C is still mapped",
                                [(self.addresses[n], n) for n in self.live],
                                self.addresses)

    def free(self, name, prediction, judge):
        self._record(f"free({name})", name, prediction, judge, self.live[name].free)

    def free_all(self):
        for block in self.live.values():
            if not block.freed:
                block.free()
        self.live.clear()

    def _record(self, operation, name, prediction, judge, action):
        freeing = name in self.live
        chunks_before = introspect.chunks()
        chunk_before = _chunk_at(chunks_before, self.addresses[name]) if freeing else None
        stats_before = introspect.stats()
        # Only the operation itself between the two readings of the break and the faults.
        break_before = procfs.brk()
        faults_before = procfs.faults()
        result = action()
        faults_after = procfs.faults()
        break_after = procfs.brk()
        stats_after = introspect.stats()

        if freeing:
            block = self.live.pop(name)
        else:
            block = self.live[name] = result
            self.addresses[name] = block.address
        address, size = block.address, block.size
        chunks = introspect.chunks()
        chunk = _chunk_at(chunks, address)
        regions = procfs.maps()
        # After a free, the block counts as mapped if any one of its pages still is;
        # after an allocation, only if all of them are.
        mapped = procfs.mapped_pages(address, size)
        still = [address - address % self.page + i * self.page
                 for i, is_mapped in enumerate(mapped) if is_mapped]
        if freeing:
            region = procfs.region_of(still[0], regions) if still else None
        else:
            region = procfs.region_of(address, regions) if all(mapped) else None
        counters = {key: getattr(stats_after, key) - getattr(stats_before, key)
                    for key in _COUNTERS}
        facts = _Facts(name, address, size, chunk_before, chunk, chunks_before, chunks,
                       break_before, break_after, counters, region)
        held, reason = judge(self, facts)
        introspect.check()          # a damaged heap is an error, not a disagreement
        known = chunk_before if freeing else chunk
        mmapped = bool(known and known.mmapped)
        heap_region = procfs.region_of(break_after - 1, regions)
        self.operations.append(Operation(
            operation=operation, block=name, prediction=prediction, held=held,
            reason=reason, address=address, size=size, mmapped=mmapped,
            break_before=break_before, break_after=break_after,
            minor_faults=faults_after[0] - faults_before[0],
            major_faults=faults_after[1] - faults_before[1],
            touched_pages=0 if freeing else _pages_spanned(address, size, self.page),
            counters={k: v for k, v in counters.items() if v},
            chunks=chunks, blocks=dict(self.addresses),
            heap_map=str(heap_region) if heap_region else None,
            block_map=str(region) if region and mmapped else None))


def _chunk_at(chunks, address):
    for chunk in chunks:
        if chunk.mem == address and chunk.kind in ("chunk", "mmapped"):
            return chunk
    return None


def _pages_spanned(address, size, page=None):
    page = page or procfs.page_size()
    return (address + size - 1) // page - address // page + 1


def _break_moved(f):
    moved = f.break_after - f.break_before
    return f"the break moved {moved:+d} B" if moved else "the break did not move"


# ---- judging the walk-through's predictions -------------------------------------------------
# Each judge returns (held, reason): whether the observations match the seeds' claim,
# and the facts that say so, or the first one that does not.

def _pushes_break(walk, f):
    grew = f.break_after - f.break_before
    if f.chunk is None:
        return False, f"no chunk of ours holds {f.name}"
    if f.chunk.mmapped:
        return False, f"{f.name} got a mapping of its own (M bit), not heap memory"
    # With no top pad the break grows by what the chunk needs, rounded up to pages.
    if not f.size <= grew < f.size + 2 * walk.page:
        return False, f"{_break_moved(f)} for a {size_text(f.size)} request"
    if not f.break_before < f.address + f.size <= f.break_after:
        return False, f"{f.name} does not end in the memory the break just added"
    return True, (f"break +{size_text(grew)} for a {size_text(f.size)} request; {f.name} is "
                  "a heap chunk (no M bit) ending in the memory the break added")


def _own_mapping(walk, f):
    r = f.region
    if f.chunk is None or not f.chunk.mmapped:
        return False, f"{f.name} came from the heap (no M bit), not from a mapping of its own"
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    if r is None or not r.anonymous or not r.perms.startswith("rw"):
        return False, f"no anonymous rw mapping holds {f.name}"
    if f.break_after - 1 in r:
        return False, f"{f.name}'s mapping is the heap itself"
    return True, (f"break unchanged; {f.name} is an mmapped chunk (M bit) in an anonymous "
                  f"{r.perms} mapping of {size_text(r.size)}, away from the heap")


def _unmapped(walk, f):
    if f.chunk_before is None or not f.chunk_before.mmapped:
        return False, f"{f.name} was a heap chunk (no M bit), so there was no mapping to undo"
    pages = procfs.mapped_pages(f.address, f.size)
    if any(pages):
        return False, (f"{pages.count(True)} of the {len(pages)} pages of {f.name}'s memory "
                       f"are still mapped: {f.region}")
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    return True, (f"{f.name}'s {size_text(f.chunk_before.size)} mapping is gone: none of its "
                  f"{len(pages)} pages is mapped (mincore, page by page) "
                  f"after {f.counters['munmap_calls']} munmap; break unchanged")


def _left_hole(walk, f):
    hole = _chunk_at(f.chunks, f.address)
    above = _chunk_at(f.chunks, walk.addresses["D"])
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    if hole is None or hole.in_use:
        return False, f"no free chunk is left at {f.name}'s address"
    if above is None or not above.in_use:
        return False, "D is not in use above the hole"
    where = f"in the {hole.bin} bin" if hole.bin else "outside any bin"
    return True, (f"break unchanged; {f.name}'s {size_text(hole.size)} chunk is free {where}, "
                  "below D still in use")


def _reuses_hole(walk, f):
    old = walk.addresses.get("B")
    if f.address != old:
        return False, f"{f.name} is at {f.address:#x}, not at B's {old:#x}"
    if f.break_after != f.break_before:
        return False, _break_moved(f)
    return True, f"{f.name} = {f.address:#x}, B's own address; break unchanged"


def _trimmed(walk, f):
    threshold = introspect.stats().trim_threshold
    # The free space the merge makes: from the start of the hole below D up to the end
    # of the top chunk, as the heap stood just before the free.
    hole = _chunk_at(f.chunks_before, walk.addresses["B"])
    top = next((c for c in f.chunks_before if c.kind == "top"), None)
    if hole is None or hole.in_use or top is None:
        return False, "before free(D) there was no free hole below D, or no top chunk"
    merged = top.address + top.size - hole.address
    moved = f.break_after - f.break_before
    if merged <= threshold:
        return False, (f"the merged free top is {size_text(merged)}, not above "
                       f"{size_text(threshold)}")
    if moved >= 0 or f.counters["trims"] != 1:
        return False, f"no trim: {_break_moved(f)}"
    in_use = [c for c in f.chunks if c.in_use]
    if [c.mem for c in in_use] != [walk.addresses["A"]]:
        return False, "more than A is left in use after the trim"
    return True, (f"B, D and the top merged into {size_text(merged)} of free top (over "
                  f"{size_text(threshold)}): trimmed, break -{size_text(-moved)}; only A is "
                  "left in use")


# ---- with glibc's defaults --------------------------------------------------------------------

def glibc_default_walk():
    """The walk-through's A, B, C, D, free(C), free(B), free(D) with the core's defaults,
    which are glibc's: dynamic mmap threshold on, 128K top pad. Meant for a fresh process
    (step 1 runs it in one); returns plain numbers. Everything allocated is freed."""
    reserve_glibc_slack()
    a, b, c, d = (heap.malloc(n * KiB) for n in (30, 40, 200, 100))
    c_chunk = introspect.chunk_of(c).size
    c_mmapped = introspect.chunk_of(c).mmapped
    c.free()
    after_c = introspect.stats()
    b.free()
    chunks = introspect.chunks()
    hole = _chunk_at(chunks, b.address)
    top = next(ch for ch in chunks if ch.kind == "top")
    before, trims = procfs.brk(), introspect.stats().trims
    d.free()
    after, trims_after = procfs.brk(), introspect.stats().trims
    a.free()
    return {"c_chunk": c_chunk, "c_mmapped": c_mmapped,
            "mmap_threshold": after_c.mmap_threshold,
            "trim_threshold": after_c.trim_threshold,
            "free_top_after_merge": top.address + top.size - hole.address,
            "break_before_free_d": before, "break_after_free_d": after,
            "trims": trims_after - trims}

