"""ledger(): where every byte of the allocator is, and how much of it is in RAM.

The ledger is computed by its own walk (csrc/core/stats.c, prm_ledger), separately from
stats() and chunks(); these tests hold the three against each other: its rows must add
up to what the heap holds, and each row must equal what stats() and chunks() say about
the same thing, through a random workload that uses every kind of chunk. The resident
columns are checked against pages whose state the test controls: touched pages of a
fresh mapping, and a freed block whose pages malloc_trim discards.

Every test that depends on the allocator's history runs in a fresh interpreter.
"""
import json
import random

import pymalloc_real as prm
from pymalloc_real._core import ffi, lib
from helpers import KiB, MiB, fresh_interpreter, reserve_glibc_slack

PAGE = prm.page_size()
MMAPPED_HEADER = 32     # the core's mapping header before an mmapped chunk

# Overhead is what no chunk covers: per segment its 32-byte header, alignment of its
# start (< 16), and the two 16-byte fence posts that close a segment that lost top.
OVERHEAD_PER_SEGMENT = 128


def _check_ledger(where):
    ledger, stats, chunks, bins = prm.ledger(), prm.stats(), prm.chunks(), prm.bins()
    heap = ledger.heap_bytes
    # The rows add up to what the heap holds, and the remainder is small.
    assert heap == stats.arena == sum(s.size for s in prm.segments()), where
    assert heap == (ledger.in_use_bytes + ledger.free_binned_bytes + ledger.free_fast_bytes
                    + ledger.top_bytes + ledger.overhead_bytes), where
    assert 0 <= ledger.overhead_bytes <= OVERHEAD_PER_SEGMENT * stats.segments, \
        (where, ledger.overhead_bytes, stats.segments)
    # In use: stats() counts mmapped chunks too, the ledger keeps them apart.
    assert ledger.in_use_bytes == stats.in_use_bytes - ledger.mmapped_in_use_bytes, where
    assert ledger.in_use_bytes == sum(c.size for c in chunks if c.in_use and not c.mmapped)
    assert ledger.mmapped_in_use_bytes == sum(c.size for c in chunks if c.mmapped)
    assert ledger.mmapped_chunks == stats.hblks == sum(1 for c in chunks if c.mmapped), where
    assert ledger.mmapped_bytes == stats.hblkhd, where
    # Each mapping is its chunk plus the offset the chunk's prev_size word records: the
    # 32-byte mapping header, and for memalign the bytes skipped to align.
    offsets = [ffi.cast("size_t *", c.address)[0] for c in chunks if c.mmapped]
    assert all(offset >= MMAPPED_HEADER for offset in offsets)
    assert ledger.mmapped_bytes == ledger.mmapped_in_use_bytes + sum(offsets), where
    # Free: the same bytes as mallinfo's fields and as the bins list them.
    assert ledger.top_bytes == stats.keepcost
    assert ledger.free_fast_bytes == stats.fsmblks == sum(e.size for e in bins.entries()
                                                            if e.kind == "fast")
    assert ledger.free_binned_bytes == sum(e.size for e in bins.entries() if e.kind != "fast")
    assert ledger.free_bytes == stats.fordblks
    assert ledger.total_bytes == heap + ledger.mmapped_bytes
    # Cumulative releases are the kernel layer's counters.
    assert ledger.released_by_trim == stats.brk_bytes_shrunk
    assert ledger.released_by_munmap == stats.munmap_bytes
    assert ledger.released_by_discard == stats.discard_bytes
    # A page cannot be more resident than it is big.
    for row in ("in_use", "free_binned", "free_fast", "top"):
        assert 0 <= getattr(ledger, f"{row}_resident") <= getattr(ledger, f"{row}_bytes"), row
    assert ledger.mmapped_resident <= ledger.mmapped_bytes
    assert ledger.free_resident == (ledger.free_binned_resident + ledger.free_fast_resident
                                    + ledger.top_resident)
    assert ledger.resident_bytes == (ledger.in_use_resident + ledger.free_resident
                                     + ledger.mmapped_resident)
    return ledger


@fresh_interpreter
def test_rows_add_up_and_agree_with_stats_chunks_and_bins():
    assert prm.ledger().total_bytes == 0, "nothing held before the first malloc"
    reserve_glibc_slack()
    prm.mallopt(prm.M_MMAP_THRESHOLD, 256 * KiB)    # some blocks mmapped, most not
    rng = random.Random(2024)
    live = []
    seen_binned = seen_mmapped = seen_shifted = False
    for step in range(1500):
        if live and rng.random() < 0.45:
            live.pop(rng.randrange(len(live))).free()
        else:
            size = rng.choice([rng.randint(1, 100), rng.randint(100, 3000),
                               rng.randint(3000, 200 * KiB), rng.randint(256 * KiB, 1 * MiB)])
            if rng.random() < 0.1:
                block = prm.memalign(rng.choice([64, 4096, 64 * KiB]), size)
            else:
                block = prm.malloc(size)
            if rng.random() < 0.3:
                block.touch()
            live.append(block)
        if step % 100 == 99:
            ledger = _check_ledger(f"step {step}")
            seen_binned |= ledger.free_binned_bytes > 0
            seen_mmapped |= ledger.mmapped_chunks > 0
            seen_shifted |= any(ffi.cast("size_t *", c.address)[0] > MMAPPED_HEADER
                                for c in prm.chunks() if c.mmapped)
    # Free small blocks last: without a large free to consolidate them, they stay fast.
    for block in [b for b in live if b.size <= 64]:
        live.remove(block)
        block.free()
    ledger = _check_ledger("after small frees")
    seen_fast = ledger.free_fast_bytes > 0
    # A chunk this small has its header on its first page and the next chunk's header
    # on its last: both written by malloc, so every fast chunk is wholly resident.
    assert ledger.free_fast_resident == ledger.free_fast_bytes
    assert seen_fast and seen_binned and seen_mmapped and seen_shifted, "all exercised"
    for block in live:
        block.free()
    ledger = _check_ledger("all freed")
    assert ledger.in_use_bytes == ledger.mmapped_chunks == ledger.mmapped_bytes == 0


@fresh_interpreter
def test_resident_columns_follow_touched_pages():
    reserve_glibc_slack()
    prm.mallopt(prm.M_MMAP_THRESHOLD, 256 * KiB)
    keep = prm.malloc(100)

    # A heap block: once touched, every byte of its chunk is resident.
    before = prm.ledger()
    block = prm.malloc(32 * PAGE)                  # under the 256 KiB threshold
    block.touch()
    chunk = prm.chunk_of(block)
    assert not chunk.mmapped
    after = _check_ledger("heap block touched")
    assert after.in_use_resident - before.in_use_resident == chunk.size
    assert after.in_use_bytes - before.in_use_bytes == chunk.size

    # A fresh mapping: the header page plus the pages touched, and nothing more.
    mapped = prm.malloc(128 * PAGE)
    assert prm.chunk_of(mapped).mmapped
    prm.no_huge_pages(mapped)
    mapping = prm.chunk_of(mapped).size + MMAPPED_HEADER
    ledger = _check_ledger("mmapped block untouched")
    assert ledger.mmapped_resident == PAGE, "only the page malloc wrote the headers on"
    first = (mapped.address + PAGE - 1) // PAGE * PAGE
    lib.prm_touch(ffi.cast("char *", first), 40 * PAGE)
    ledger = _check_ledger("mmapped block partly touched")
    assert ledger.mmapped_resident == 41 * PAGE
    assert ledger.mmapped_bytes == mapping
    munmapped = ledger.released_by_munmap
    mapped.free()
    ledger = _check_ledger("mmapped block freed")
    assert ledger.mmapped_resident == ledger.mmapped_bytes == 0
    assert ledger.released_by_munmap - munmapped == mapping
    block.free()
    keep.free()


@fresh_interpreter
def test_free_memory_below_a_pin_stays_resident_until_malloc_trim_discards_it():
    reserve_glibc_slack()
    prm.mallopt(prm.M_MMAP_THRESHOLD, 4 * MiB)     # keep the big block on the heap
    prm.mallopt(prm.M_TRIM_THRESHOLD, 128 * KiB)
    hole = prm.malloc(1 * MiB)
    pin = prm.malloc(100)                           # live above it: the break cannot drop
    hole.touch()
    size = prm.chunk_of(hole).size
    before = _check_ledger("before free")
    hole.free()
    freed = _check_ledger("after free")
    # Freeing recycles: the chunk moves from in use to the bins, every byte still in RAM.
    assert freed.free_binned_resident - before.free_binned_resident == size
    assert before.in_use_resident - freed.in_use_resident == size
    assert freed.free_binned_resident >= size
    assert freed.heap_bytes == before.heap_bytes, "nothing given back yet"
    assert freed.free_resident >= size, "what malloc_trim could give back"

    assert prm.malloc_trim(0)
    trimmed = _check_ledger("after malloc_trim")
    # MADV_DONTNEED leaves of each binned chunk only its first page (the chunk header
    # and bin links stay) and its last partial page (shared with the next chunk).
    binned = [e for e in prm.bins().entries() if e.kind != "fast"]
    assert trimmed.free_binned_resident <= 2 * PAGE * len(binned), trimmed.free_binned_resident
    assert trimmed.free_binned_bytes >= size, "the memory is still ours, only not in RAM"
    assert trimmed.released_by_discard - freed.released_by_discard >= size - 2 * PAGE
    assert trimmed.in_use_resident == freed.in_use_resident
    pin.free()


@fresh_interpreter
def test_as_text_names_every_row_and_as_dict_is_json():
    prm.mallopt(prm.M_MMAP_THRESHOLD, 128 * KiB)
    blocks = [prm.malloc(size) for size in (1000, 24, 5000, 24, 256 * KiB)]
    blocks[1].free()                    # a fast-bin chunk
    blocks[2].free()                    # a binned chunk (the 24 above pins it)
    blocks[4].touch()
    ledger = _check_ledger("for the table")
    assert all(getattr(ledger, name) > 0 for name in (
        "in_use_bytes", "mmapped_in_use_bytes", "free_binned_bytes", "free_fast_bytes",
        "top_bytes", "overhead_bytes", "mmapped_resident")), "every row has a number to show"
    text = ledger.as_text()
    for row, value in (("in use (heap)", ledger.in_use_bytes),
                       ("in use (mmapped)", ledger.mmapped_in_use_bytes),
                       ("free in bins", ledger.free_binned_bytes),
                       ("free in fast bins", ledger.free_fast_bytes),
                       ("free in top", ledger.top_bytes),
                       ("overhead", ledger.overhead_bytes + ledger.mmapped_bytes
                        - ledger.mmapped_in_use_bytes),
                       ("total held", ledger.total_bytes)):
        line = next(line for line in text.splitlines() if line.startswith(row + " "))
        assert f"{value:,d}" in line, (row, line)
    assert "given back so far" in text and f"{ledger.released_by_discard:,d}" in text

    data = ledger.as_dict()
    assert json.loads(json.dumps(data)) == data
    for name in ("heap_bytes", "in_use_bytes", "free_binned_resident", "mmapped_chunks",
                 "released_by_trim", "released_by_munmap", "released_by_discard"):
        assert data[name] == getattr(ledger, name)
    assert data["free_bytes"] == ledger.free_bytes and data["total_bytes"] == ledger.total_bytes
    assert data["free_resident"] == ledger.free_resident
    assert data["resident_bytes"] == ledger.resident_bytes
    # The rows of the table add up to the total it prints.
    assert (ledger.in_use_bytes + ledger.mmapped_in_use_bytes + ledger.free_bytes
            + ledger.overhead_bytes + ledger.mmapped_bytes - ledger.mmapped_in_use_bytes
            == ledger.total_bytes)
    for block in (blocks[0], blocks[3], blocks[4]):
        block.free()


@fresh_interpreter
def test_a_damaged_heap_raises_instead_of_a_wrong_ledger():
    a = prm.malloc(2000)
    guard = prm.malloc(24)
    size_word = ffi.cast("size_t *", a.address - 8)
    good = size_word[0]
    size_word[0] = 1 << 40 | 1                    # a size that runs past the heap's end
    try:
        prm.ledger()
        raise AssertionError("ledger() walked a damaged heap")
    except prm.HeapCorruption as error:
        assert "ledger" in str(error), error
    finally:
        size_word[0] = good
    _check_ledger("repaired")
    a.free()
    guard.free()
