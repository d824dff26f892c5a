"""The seeds' walk-through (seed 000/001), replayed on real memory.

A=malloc(30K) and B=malloc(40K) push the break up; C=malloc(200K) is above the mmap
threshold and gets a mapping of its own; D=malloc(100K) pushes the break again;
free(C) unmaps; free(B) leaves a hole that the next 40K request reuses; and when D is
freed it merges with the free B below and the top above, the free top exceeds the
128 KiB trim threshold, and the break moves back down.

The seeds assume fixed thresholds and no top pad; the test pins them with mallopt,
which, as in glibc, also turns off the dynamic threshold that freeing C would
otherwise have raised. It runs in a fresh interpreter so that our heap is the one at
the break.
"""
import pymalloc_real as prm
from helpers import KiB, fresh_interpreter, pin_seed_thresholds, reserve_glibc_slack


def _anonymous_rw_region_covering(start, end):
    for region in prm.maps():
        if region.start <= start and end <= region.end:
            return region
    return None


@fresh_interpreter
def test_seed_walkthrough_on_real_memory():
    reserve_glibc_slack()
    pin_seed_thresholds()
    page = prm.page_size()

    brk0 = prm.brk()
    a = prm.malloc(30 * KiB)
    brk_a = prm.brk()
    assert brk_a > brk0, "A=malloc(30K) must move the break up"
    assert brk_a - brk0 < 30 * KiB + 2 * page, "with no top pad the break moves by about 30K"

    b = prm.malloc(40 * KiB)
    brk_b = prm.brk()
    assert brk_b > brk_a, "B=malloc(40K) must move the break up"
    assert a.address < b.address < brk_b

    prm.maps()      # warm the interpreter's own pools before looking at maps again
    c = prm.malloc(200 * KiB)
    assert prm.brk() == brk_b, "C=malloc(200K) is mmapped: the break stays"
    chunk_c = prm.chunk_of(c)
    assert chunk_c.mmapped and chunk_c.kind == "mmapped", chunk_c
    assert prm.is_mapped(c.address, c.size)
    region = _anonymous_rw_region_covering(c.address, c.address + c.size)
    assert region is not None and region.anonymous and region.perms.startswith("rw"), region
    assert not (region.start <= brk_b < region.end), "C's mapping is not the heap"

    d = prm.malloc(100 * KiB)
    brk_d = prm.brk()
    assert brk_d > brk_b, "D=malloc(100K) is below the threshold: the break moves up"
    assert not prm.chunk_of(d).mmapped

    c_start, c_end = c.address, c.address + c.size
    prm.maps()
    c.free()
    assert not prm.is_mapped(c_start, c_end - c_start), "free(C) must unmap C"
    assert _anonymous_rw_region_covering(c_start, c_end) is None, "C's mapping is gone from maps"
    assert prm.brk() == brk_d

    b_address = b.address
    b.free()
    assert prm.brk() == brk_d, "free(B) leaves a hole: nothing goes back to the kernel"
    hole = prm.chunk_of(b_address)
    assert hole is not None and not hole.in_use and hole.bin == "unsorted", hole

    b2 = prm.malloc(40 * KiB)
    assert b2.address == b_address, "a new 40K request reuses B's hole"
    assert prm.brk() == brk_d

    b2.free()
    stats_before = prm.stats()
    d.free()
    brk_end = prm.brk()
    stats_after = prm.stats()
    assert stats_after.trims == stats_before.trims + 1, "freeing D trims the heap"
    assert brk_end < brk_d, "the break moves back down"
    # B (40K) + D (100K) + the old top merged into 140K+ of free top, all above A; the
    # trim keeps only the minimum top, so the break ends within a page of A's end.
    assert brk_end - (a.address + a.size) < 2 * page, (hex(brk_end), hex(a.address + a.size))
    assert [c.kind for c in prm.chunks()] == ["chunk", "top"]
    prm.check()
    a.free()
