"""Each malloc and free flow of the core, observed through bins(), chunks(), stats()
and the addresses malloc returns. Every test runs in a fresh interpreter: the bins'
contents and the thresholds depend on everything that ran before in a process."""
from helpers import KiB, MiB, fresh_interpreter, pin_seed_thresholds, reserve_glibc_slack

import pymalloc_real as prm


def _bin_of(block):
    return prm.bins().find(block.address)


def chunk_size_for(request):
    """The chunk size serving a request: 8 bytes of overhead, rounded up to 16."""
    return max(32, (request + 8 + 15) & ~15)


# ---- each bin kind -----------------------------------------------------------------

@fresh_interpreter
def test_fast_bin_is_lifo_and_unmerged():
    blocks = [prm.malloc(24) for _ in range(5)]          # 32-byte chunks, fast-bin size
    blocks[1].free()
    blocks[3].free()
    fast = prm.bins().fast
    assert [e.address + 16 for e in fast[0]] == [blocks[3].address, blocks[1].address]
    chunk = prm.chunk_of(blocks[1].address)
    assert chunk.bin == "fast" and not chunk.in_use and chunk.prev_inuse
    blocks[2].free()                                       # between two fast chunks: no merge
    assert len(prm.bins().fast[0]) == 3
    again = prm.malloc(24)
    assert again.address == blocks[2].address, "fast bins hand back the last chunk freed"
    prm.check()


@fresh_interpreter
def test_unsorted_then_small_bin():
    a, guard = prm.malloc(500), prm.malloc(24)
    a.free()
    entry = _bin_of(a)
    assert entry.kind == "unsorted" and entry.size == 512
    big = prm.malloc(3000)                                 # a miss sorts the unsorted bin
    entry = _bin_of(a)
    assert entry.kind == "small" and entry.index == 512 // 16, entry
    again = prm.malloc(500)
    assert again.address == a.address, "an exact small request comes from its small bin"
    prm.check()
    for b in (guard, big, again):
        b.free()


@fresh_interpreter
def test_large_bin_sorted_with_size_links():
    sizes = [5000, 7000, 5000, 6000, 7000]
    blocks = []
    for size in sizes:
        blocks.append(prm.malloc(size))
        blocks.append(prm.malloc(24))                      # guards keep them apart
    for block in blocks[0::2]:
        block.free()
    prm.malloc(20000)                                      # sorts them into large bins
    large = prm.bins().large
    entries = [e for index in sorted(large) for e in large[index]]
    assert sorted(e.size for e in entries) == sorted(chunk_size_for(s) for s in sizes), entries
    for index, in_bin in large.items():
        assert index >= 64
        assert [e.size for e in in_bin] == sorted((e.size for e in in_bin), reverse=True)
    prm.check()
    # Best fit: a 6000-byte request takes the 6016-byte chunk, not a 7008 one.
    fit = prm.malloc(6000)
    assert fit.address == blocks[6].address


# ---- coalescing, top, last remainder -----------------------------------------------

@fresh_interpreter
def test_coalescing_backward_and_forward():
    x, y, z, guard, p, q, guard2 = (prm.malloc(1000) for _ in range(7))
    x.free()
    y.free()                                               # merges backward into x
    merged = prm.chunk_of(x.address)
    assert merged.size == 2 * 1008 and merged.bin == "unsorted"
    assert prm.chunk_of(y.address) is None, "y's chunk no longer exists on its own"
    z.free()                                               # merges backward again
    assert prm.chunk_of(x.address).size == 3 * 1008
    q.free()
    p.free()                                               # merges forward into q
    assert prm.chunk_of(p.address).size == 2 * 1008
    assert prm.chunk_of(q.address) is None
    assert len(prm.bins().unsorted) == 2
    prm.check()


@fresh_interpreter
def test_free_next_to_top_merges_into_top():
    a = prm.malloc(3000)
    b = prm.malloc(3000)
    top_before = [c for c in prm.chunks() if c.kind == "top"][0]
    b.free()
    top_after = [c for c in prm.chunks() if c.kind == "top"][0]
    assert top_after.address == b.address - 16
    assert top_after.size == top_before.size + 3008
    assert prm.bins().find(b.address) is None
    a.free()
    prm.check()


@fresh_interpreter
def test_last_remainder_is_sliced_for_consecutive_small_requests():
    big = prm.malloc(2000)
    guard = prm.malloc(24)
    big.free()
    first = prm.malloc(100)      # no fit in fast/small bins: big is binned, then split
    second = prm.malloc(100)     # served from the remainder left in the unsorted bin
    third = prm.malloc(100)
    assert first.address == big.address
    assert second.address == first.address + 112
    assert third.address == second.address + 112
    rest = prm.chunk_of(third.address + 112)
    assert rest.bin == "unsorted" and rest.size == 2016 - 3 * 112
    prm.check()
    for block in (first, second, third, guard):
        block.free()


@fresh_interpreter
def test_fast_bin_consolidation_on_a_large_free():
    small = [prm.malloc(40) for _ in range(6)]            # 48-byte chunks, adjacent
    big = prm.malloc(70 * KiB)
    guard = prm.malloc(24)
    for block in small:
        block.free()
    assert len(prm.bins().fast[1]) == 6
    before = prm.stats().consolidations
    big.free()                                             # >= 64 KiB: consolidate
    after = prm.stats()
    assert after.consolidations == before + 1
    assert prm.bins().fast == {} or all(not v for v in prm.bins().fast.values())
    merged = prm.chunk_of(small[0].address)
    assert merged.size >= 6 * 48 and not merged.in_use
    prm.check()
    guard.free()


@fresh_interpreter
def test_large_request_consolidates_fast_bins():
    small = [prm.malloc(40) for _ in range(30)]
    guard = prm.malloc(24)
    for block in small:
        block.free()
    fit = prm.malloc(1400)                                 # large request: consolidate first
    assert fit.address == small[0].address, "30 merged 48-byte chunks hold the 1400 bytes"
    prm.check()
    guard.free()


# ---- trimming ------------------------------------------------------------------------

@fresh_interpreter
def test_trim_lowers_the_break_when_top_exceeds_threshold():
    reserve_glibc_slack()
    pin_seed_thresholds()
    keep = prm.malloc(100)
    blocks = [prm.malloc(100 * KiB) for _ in range(5)]
    high = prm.brk()
    trims = prm.stats().trims
    for block in reversed(blocks):
        block.free()
    # Each free merges 100K into top. The trim check runs when the merged chunk is at
    # least 64K; it trims when top reaches 128K: after the 2nd and the 4th free.
    assert prm.stats().trims == trims + 2
    assert prm.brk() < high - 390 * KiB
    top = [c for c in prm.chunks() if c.kind == "top"][0]
    assert 100 * KiB < top.size < 128 * KiB, "the 5th free left 100K in top, under the threshold"
    prm.check()
    keep.free()


@fresh_interpreter
def test_free_below_a_live_chunk_is_not_returned_but_malloc_trim_discards_it():
    reserve_glibc_slack()
    prm.mallopt(prm.M_MMAP_THRESHOLD, 4 * MiB)            # keep the big block on the heap
    hole = prm.malloc(1 * MiB - 64 * KiB)
    pin = prm.malloc(100)                                  # the "memory hole" of the seeds
    hole.touch()
    hole_start, hole_size = hole.address, hole.size
    assert all(prm.residency(hole_start, hole_size))
    brk = prm.brk()
    hole.free()
    assert prm.brk() == brk, "a live chunk above pins the free memory below"
    inside = (hole_start + 64 * KiB, 512 * KiB)            # well inside the free chunk
    assert all(prm.residency(*inside)), "still resident: free only recycles"
    before = prm.stats()
    assert prm.malloc_trim(0)
    after = prm.stats()
    assert after.discard_bytes - before.discard_bytes >= 900 * KiB
    assert not any(prm.residency(*inside)), "malloc_trim gave the pages back"
    assert prm.is_mapped(*inside), "they stay mapped: the heap is unchanged"
    prm.check()
    pin.free()


# ---- thresholds and mallopt ---------------------------------------------------------

@fresh_interpreter
def test_mallopt_moves_the_mmap_threshold():
    prm.mallopt(prm.M_TOP_PAD, 0)                          # top holds no slack
    prm.mallopt(prm.M_MMAP_THRESHOLD, 256 * KiB)
    below = prm.malloc(200 * KiB)
    guard = prm.malloc(24)
    above = prm.malloc(300 * KiB)
    assert not prm.chunk_of(below).mmapped
    assert prm.chunk_of(above).mmapped
    prm.mallopt(prm.M_MMAP_THRESHOLD, 64 * KiB)
    hundred = prm.malloc(100 * KiB)
    assert prm.chunk_of(hundred).mmapped, "100K is now above the threshold"
    stats = prm.stats()
    assert stats.mmap_threshold == 64 * KiB and not stats.dynamic_thresholds
    # As in glibc, the threshold decides only when the arena has no room: a free chunk
    # that already holds the request serves it.
    below.free()
    reused = prm.malloc(100 * KiB)
    assert reused.address == below.address and not prm.chunk_of(reused).mmapped
    prm.check()


@fresh_interpreter
def test_dynamic_mmap_threshold_follows_freed_mmapped_chunks():
    stats = prm.stats()
    assert stats.dynamic_thresholds and stats.mmap_threshold == 128 * KiB
    block = prm.malloc(1 * MiB)
    chunk = prm.chunk_of(block)
    assert chunk.mmapped
    block.free()
    stats = prm.stats()
    assert stats.mmap_threshold == chunk.size
    assert stats.trim_threshold == 2 * chunk.size
    again = prm.malloc(1 * MiB)
    assert not prm.chunk_of(again).mmapped, "1 MiB now comes from the heap"
    huge = prm.malloc(40 * MiB)
    huge.free()
    assert prm.stats().mmap_threshold == chunk.size, "the rule stops at 32 MiB"


@fresh_interpreter
def test_mxfast_zero_disables_fast_bins():
    prm.mallopt(prm.M_MXFAST, 0)
    a, guard = prm.malloc(24), prm.malloc(24)
    a.free()
    assert _bin_of(a).kind == "unsorted"
    assert prm.stats().max_fast < 32


@fresh_interpreter
def test_perturb_fills_allocated_and_freed_memory():
    from pymalloc_real._core import ffi
    prm.mallopt(prm.M_PERTURB, 0xA5)
    block = prm.malloc(4000)
    assert block.read() == bytes([0xA5 ^ 0xFF]) * 4000
    guard = prm.malloc(24)
    address = block.address
    block.free()
    # Past the free chunk's fd/bk/nextsize links the old memory holds the perturb byte.
    tail = bytes(ffi.buffer(ffi.cast("char *", address + 64), 1000))
    assert tail == bytes([0xA5]) * 1000
    guard.free()


# ---- calloc, realloc, memalign --------------------------------------------------------

@fresh_interpreter
def test_calloc_zeroes_recycled_memory():
    dirty = prm.malloc(5000)
    dirty.fill(0xEE)
    guard = prm.malloc(24)
    dirty.free()
    clean = prm.calloc(10, 500)
    assert clean.address == dirty.address
    assert clean.read() == bytes(5000)
    for count, size in [(1, 0), (3, 7), (1000, 100), (1, 300 * KiB)]:
        block = prm.calloc(count, size)
        assert block.read() == bytes(count * size)
        block.fill(0x11)
        block.free()
    guard.free()


@fresh_interpreter
def test_realloc_in_place_and_moved():
    a = prm.malloc(1000)
    a.write(b"payload")
    b = prm.realloc(a, 500)                                # shrink: in place
    assert b.address == a.address and a.freed and b.read(7) == b"payload"
    c = prm.realloc(b, 50000)                              # last before top: grows into top
    assert c.address == b.address and c.read(7) == b"payload"
    guard = prm.malloc(24)
    d = prm.realloc(c, 60000)                              # blocked by guard: moves
    assert d.address != c.address and d.read(7) == b"payload"
    # grow into a free neighbour
    e, f, guard2 = prm.malloc(2000), prm.malloc(2000), prm.malloc(24)
    e.write(b"neighbour")
    f.free()
    g = prm.realloc(e, 3500)
    assert g.address == e.address and g.read(9) == b"neighbour"
    prm.check()
    for block in (d, guard, g, guard2):
        block.free()


@fresh_interpreter
def test_realloc_of_mmapped_block_uses_mremap():
    block = prm.malloc(2 * MiB)
    block.write(b"start", 0)
    block.write(b"end", 2 * MiB - 3)
    before = prm.stats().mremap_calls
    bigger = prm.realloc(block, 6 * MiB)
    assert prm.stats().mremap_calls == before + 1
    assert prm.chunk_of(bigger).mmapped
    assert bigger.read(5) == b"start" and bigger.read(3, 2 * MiB - 3) == b"end"
    smaller = prm.realloc(bigger, 1 * MiB)
    assert prm.stats().mremap_calls == before + 2 and smaller.read(5) == b"start"
    smaller.free()
    prm.check()


def test_memalign_alignments():
    blocks = []
    for shift in range(0, 17):
        alignment = 1 << shift
        for size in (1, 100, 5000, 200 * KiB):
            block = prm.memalign(alignment, size)
            assert block.address % alignment == 0
            assert block.usable_size >= size
            block.fill(shift)
            blocks.append(block)
    prm.check()
    for block in blocks:
        block.free()
    prm.check()
