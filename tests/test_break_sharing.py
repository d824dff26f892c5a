"""The program break is shared with the interpreter's own glibc malloc (DESIGN.md,
"Sharing the break with glibc"). When the break does not continue our last segment we
start a new one, closing the old with fence posts; we lower the break only when it is
exactly the end of our top chunk; and every break we set is also glibc's view of it,
so glibc's sbrk never hands out memory that is ours."""
import ctypes

import pymalloc_real as prm
from helpers import KiB, MiB, fresh_interpreter, reserve_glibc_slack


def _libc_sbrk():
    libc = ctypes.CDLL(None)
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_ssize_t]
    return libc.sbrk


@fresh_interpreter
def test_our_break_moves_are_glibcs_view_too():
    sbrk = _libc_sbrk()
    reserve_glibc_slack()
    block = prm.malloc(100 * KiB)
    assert sbrk(0) == prm.brk(), "glibc's cached break must follow ours"
    foreign = sbrk(4096)
    assert foreign == prm.brk() - 4096, "glibc's sbrk continues above our memory"
    block.write(b"x" * 100 * KiB)     # and ours is intact
    prm.check()
    block.free()


@fresh_interpreter
def test_foreign_break_movement_starts_a_new_segment_with_fences():
    sbrk = _libc_sbrk()
    reserve_glibc_slack()
    prm.mallopt(prm.M_TOP_PAD, 0)
    prm.mallopt(prm.M_MMAP_THRESHOLD, 1 * MiB)
    first = prm.malloc(10 * KiB)
    ours = prm.brk()
    foreign = sbrk(64 * KiB)                       # someone else extends the break
    assert foreign == ours
    second = prm.malloc(200 * KiB)                 # our top cannot hold it: grow again
    segments = prm.segments()
    assert [s.kind for s in segments] == ["brk", "brk"]
    assert segments[1].start == ours + 64 * KiB, "the new segment starts at the new break"
    assert segments[0].end <= ours and not segments[0].holds_top and segments[1].holds_top
    assert prm.stats().segments_opened == 1
    old = [c for c in prm.chunks() if c.segment == segments[0].serial]
    assert [c.kind for c in old[-2:]] == ["fence", "fence"], old[-3:]
    assert old[-3].kind == "chunk" and not old[-3].in_use, "the old top became a free chunk"
    prm.check()
    ctypes.memset(foreign, 0x5A, 64 * KiB)         # glibc's memory in between is untouched
    second.write(b"y" * 200 * KiB)
    first.free()
    second.free()
    assert prm.brk() >= ours + 64 * KiB, "never lowered into memory that is not ours"
    prm.check()


@fresh_interpreter
def test_no_trim_when_the_break_is_not_ours():
    sbrk = _libc_sbrk()
    reserve_glibc_slack()
    prm.mallopt(prm.M_TOP_PAD, 0)
    prm.mallopt(prm.M_TRIM_THRESHOLD, 128 * KiB)
    prm.mallopt(prm.M_MMAP_THRESHOLD, 1 * MiB)
    keep = prm.malloc(100)
    big = prm.malloc(500 * KiB)
    sbrk(4096)                                     # glibc now owns the top of the break
    high = prm.brk()
    trims = prm.stats().trims
    big.free()                                     # top far above the trim threshold
    assert prm.brk() == high and prm.stats().trims == trims
    top = [c for c in prm.chunks() if c.kind == "top"][0]
    assert top.size > 500 * KiB, "the free memory stays in our top chunk"
    prm.check()
    keep.free()
