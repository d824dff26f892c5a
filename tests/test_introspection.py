"""stats(), chunks(), bins(), arenas(), segments() and check() describe the heap
consistently with each other and with the kernel, and looking changes nothing."""
import dataclasses

import pymalloc_real as prm
from helpers import KiB, MiB, fresh_interpreter
from pymalloc_real._core import ffi


def _populate():
    blocks = [prm.malloc(n) for n in (24, 40, 100, 500, 1500, 5000, 70 * KiB, 300 * KiB, 2 * MiB)]
    for block in blocks[::3]:
        block.free()
    return [b for b in blocks if not b.freed]


def test_chunks_tile_every_segment_exactly():
    live = _populate()
    chunks = prm.chunks()
    for segment in prm.segments():
        inside = [c for c in chunks if c.kind != "mmapped" and segment.start <= c.address < segment.end]
        assert inside, segment
        for before, after in zip(inside, inside[1:]):
            assert before.address + before.size == after.address, (before, after)
        assert inside[-1].address + inside[-1].size == segment.end
        assert inside[0].prev_inuse, "the first chunk of a segment has P set"
        # Only the segment record precedes it; in a non-main arena's first heap the arena
        # itself follows the record (its bins and lock: a few KiB).
        header = 8 * KiB if segment.arena != 0 and segment.serial == 0 else 64
        assert inside[0].address - segment.start < header, "only the segment header precedes it"
    for block in live:
        block.free()


def test_in_use_accounting_matches_the_chunk_walk():
    live = _populate()
    stats = prm.stats()
    in_use = [c for c in prm.chunks() if c.in_use]
    assert stats.in_use_bytes == sum(c.size for c in in_use)
    assert stats.in_use_chunks == len(in_use)
    assert stats.uordblks + stats.fordblks == stats.arena
    assert stats.arena == sum(s.size for s in prm.segments())
    assert stats.keepcost == [c for c in prm.chunks() if c.kind == "top"][0].size
    mmapped = [c for c in prm.chunks() if c.kind == "mmapped"]
    assert stats.hblks == len(mmapped)
    for block in live:
        block.free()


def test_every_free_chunk_is_in_exactly_one_bin():
    live = _populate()
    bins = prm.bins()
    entries = bins.entries()
    addresses = [e.address for e in entries]
    assert len(addresses) == len(set(addresses))
    chunks = {c.address: c for c in prm.chunks()}
    for entry in entries:
        chunk = chunks[entry.address]
        assert not chunk.in_use and chunk.bin == entry.kind and chunk.size == entry.size
    free_regular = [c for c in chunks.values() if c.kind == "chunk" and not c.in_use]
    assert len(free_regular) == len(entries)
    for block in live:
        block.free()


def test_looking_does_not_disturb_the_heap():
    live = _populate()
    snapshot = (prm.chunks(), prm.bins(), prm.stats().in_use_bytes, prm.brk())
    for _ in range(3):
        prm.stats(), prm.chunks(), prm.bins(), prm.arenas(), prm.segments(), prm.check()
    assert (prm.chunks(), prm.bins(), prm.stats().in_use_bytes, prm.brk()) == snapshot
    for block in live:
        block.free()


def test_arena_summary_agrees_with_stats():
    live = _populate()
    (main,) = prm.arenas()
    stats = prm.stats()
    assert main.index == 0 and not main.corrupt
    assert main.system_bytes == stats.arena
    assert main.free_bytes == stats.fordblks
    assert main.top_size == stats.keepcost
    assert main.fast_chunks == stats.smblks
    for block in live:
        block.free()


def test_stats_has_mallinfo2_fields_and_syscall_counters():
    fields = {f.name for f in dataclasses.fields(prm.HeapStats)}
    assert {"arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost"} <= fields
    before = prm.stats()
    block = prm.malloc(40 * MiB)
    after = prm.stats()
    assert after.mmap_calls == before.mmap_calls + 1
    assert after.mmap_bytes - before.mmap_bytes >= 40 * MiB
    block.free()
    assert prm.stats().munmap_calls == after.munmap_calls + 1


def test_block_properties():
    block = prm.malloc(100)
    assert block.size == 100 and 100 <= block.usable_size < 100 + 32
    assert block.address % 16 == 0
    assert prm.chunk_of(block).mem == block.address
    assert "live" in repr(block) and hex(block.address) in repr(block)
    assert int(ffi.cast("uintptr_t", block.cdata)) == block.address
    block.free()
    assert block.freed


@fresh_interpreter
def test_check_reports_damage_precisely():
    a = prm.malloc(2000)
    guard = prm.malloc(24)
    a.free()
    prm.check()
    ffi.cast("size_t *", a.address - 16 + 2000 + 8 + 8)[0] = 12345   # footer of the free chunk
    try:
        prm.check()
        raise AssertionError("check() missed a damaged footer")
    except prm.HeapCorruption as error:
        assert "prev_size" in str(error) or "footer" in str(error), error
    del guard


def test_maps_and_break():
    regions = prm.maps()
    assert any(r.path == "[stack]" for r in regions)
    block = prm.malloc(64)
    region = prm.region_of(block.address)
    assert region is not None and region.perms.startswith("rw")
    assert prm.brk() > 0
    assert prm.residency(block) == [True] * len(prm.residency(block))
    block.free()
