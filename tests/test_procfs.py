"""What pymalloc_real.kernel.procfs reports about the process, checked against the kernel.

Each test makes the kernel do something countable (first-touch faults on fresh pages,
a mapping appearing and going, the break going down) and checks that the procfs view
(faults, residency, maps, brk, physical_pages, track, process_layout) reports exactly
that, with a stated tolerance only where the interpreter itself can move the number.

Fresh pages come from mmapped chunks: a chunk above the mmap threshold has a mapping of
its own, so none of its pages has been touched before. The tests that need one pin the
threshold with mallopt, which is process-wide (it also turns off the dynamic threshold),
so they run in a fresh interpreter. Fault counts mean 4 KiB pages only if transparent
huge pages cannot serve the range, so such blocks are marked no_huge_pages() before the
first touch (with THP "always", one 2 MiB fault would stand for 512 pages).

Layout of an mmapped block used below: the mapping starts on a page boundary with the
core's 32-byte mapping header and the 16-byte chunk header, then the user's memory.
malloc writes both headers, so page 0 of the mapping is resident before anything is
touched; a block of M pages spans M + 1 pages (its end runs 48 bytes into page M).
"""
import ctypes
import errno
import io
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest

import pymalloc_real as prm
from pymalloc_real import _core
from pymalloc_real.kernel import procfs
from pymalloc_real._core import ffi, lib
from helpers import KiB, MiB, fresh_interpreter, pin_seed_thresholds, reserve_glibc_slack

PAGE = prm.page_size()

# Minor faults the interpreter may take between two readings of the counters besides
# the pages a test touches: a new page of a pymalloc pool or of the C stack, one for
# the rusage object, one for the cffi call's arguments. Measured on this machine over
# 300 readings around lib.prm_touch: 0 extra every time; 4 leaves room for a cold pool.
FAULT_SLACK = 4


def _mmap_threshold_pinned():
    # Blocks of 128 KiB and more get a mapping of their own, from now on.
    prm.mallopt(prm.M_MMAP_THRESHOLD, 128 * KiB)


def _page_up(address):
    return (address + PAGE - 1) // PAGE * PAGE


def _touch(address, length):
    lib.prm_touch(ffi.cast("char *", address), length)


def _norm(line):
    return " ".join(line.split())


# ---- page faults and residency -----------------------------------------------------

@fresh_interpreter
def test_touching_n_fresh_pages_takes_n_faults_and_makes_exactly_them_resident():
    _mmap_threshold_pinned()
    for pages, touched in ((64, 1), (64, 17), (256, 200)):
        block = prm.malloc(pages * PAGE)
        assert prm.chunk_of(block).mmapped, "the block must have a fresh mapping"
        prm.no_huge_pages(block)
        # Before: only the header page (page 0) is backed.
        assert prm.residency(block) == [True] + [False] * pages
        start = _page_up(block.address)            # page 1 of the mapping
        pointer = ffi.cast("char *", start)         # made before the first reading
        length = touched * PAGE
        before = prm.faults()[0]
        lib.prm_touch(pointer, length)
        taken = prm.faults()[0] - before
        # Each fresh page costs exactly one write fault; never fewer (no fault-around
        # for anonymous memory), more only by what the interpreter itself faulted.
        assert touched <= taken <= touched + FAULT_SLACK, (touched, taken)
        assert prm.residency(block) == [True] + [True] * touched + [False] * (pages - touched)
        assert prm.residency(start, length) == [True] * touched
        assert not any(prm.residency(start + length, block.address + block.size - start - length))
        # Touching the same pages again costs nothing: they are backed now.
        before = prm.faults()[0]
        lib.prm_touch(pointer, length)
        assert prm.faults()[0] - before <= FAULT_SLACK
        block.free()


def test_getrusage_and_proc_stat_count_the_same_faults():
    # Both are the process's own counters (all threads, this process only), so read
    # between two getrusage calls the /proc value can only be between them: opening
    # and reading /proc/self/stat can fault a page or two itself, which lands in the
    # second getrusage reading, never makes stat smaller than the first.
    for _ in range(50):
        first = prm.faults()
        stat = prm.faults_from_stat()
        second = prm.faults()
        assert first[0] <= stat[0] <= second[0], (first, stat, second)
        assert first[1] <= stat[1] <= second[1], (first, stat, second)
        assert second[0] - first[0] <= FAULT_SLACK
    # And stat sees touches as getrusage does: a fresh mapping of 32 pages, touched.
    mapping = _anonymous_mmap(32 * PAGE)
    try:
        prm.no_huge_pages(mapping, 32 * PAGE)
        before = prm.faults_from_stat()[0]
        _touch(mapping, 32 * PAGE)
        after = prm.faults_from_stat()[0]
        assert 32 <= after - before <= 32 + FAULT_SLACK
    finally:
        _munmap(mapping, 32 * PAGE)


def test_major_faults_are_counted_by_both(tmp_path):
    # A major fault needs a page that is not in the page cache: write a file, flush it
    # to disk and drop it from the cache, then read it through a mapping.
    import mmap
    path = tmp_path / "cold"
    path.write_bytes(b"x" * (16 * PAGE))
    with open(path, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        with mmap.mmap(f.fileno(), 16 * PAGE, prot=mmap.PROT_READ) as m:
            first, stat = prm.faults(), prm.faults_from_stat()
            assert m[0] == ord("x")
            second, stat_after = prm.faults(), prm.faults_from_stat()
    if second[1] == first[1]:
        pytest.skip("the file system kept the pages cached: no major fault to count")
    # stat was read before the fault and getrusage after it, and the other way round:
    # each counter saw the fault, and neither runs ahead of the other.
    assert first[1] <= stat[1] < second[1] <= stat_after[1]


def test_faults_from_stat_reads_fields_10_and_12(monkeypatch):
    # The command name (field 2) may hold spaces and parentheses; fields 11 and 13 are
    # the children's counts, which a test of this process alone would not tell apart.
    line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 111 222 333 444 5 6 7 8 20 0 1 0\n"
    monkeypatch.setattr(procfs, "open", lambda path, *a, **k: io.StringIO(line), raising=False)
    assert prm.faults_from_stat() == (111, 333)
    assert prm.faults_from_stat(4242) == (111, 333)


def test_faults_from_stat_of_another_process(sleeper):
    minor, major = prm.faults_from_stat(sleeper.pid)
    # A dynamically linked program faults in at least its stack, its data and libc's.
    assert minor > 10 and major >= 0
    with pytest.raises(FileNotFoundError):
        prm.faults_from_stat(2 ** 22 + 12345)       # beyond pid_max: no such process


# ---- /proc/<pid>/maps -------------------------------------------------------------------

def _read_maps_text(pid="self"):
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
        return f.read()


def _assert_parsed_exactly(text, regions):
    lines = text.splitlines()
    assert len(regions) == len(lines), (len(regions), len(lines))
    for line, region in zip(lines, regions):
        assert _norm(str(region)) == _norm(line), (line, region)
        assert region.start < region.end and region.size == region.end - region.start
        assert region.kind in procfs.KINDS


@pytest.mark.parametrize("line, kind", [
    ("55c05bdaa000-55c05bdaf000 r-xp 00002000 fe:00 260875    /usr/bin/sleep", "file"),
    ("7f0000000000-7f0000001000 rw-s 00000000 00:01 1027    /memfd:x (deleted)", "file"),
    ("55c09a33d000-55c09a35e000 rw-p 00000000 00:00 0          [heap]", "heap"),
    ("7ffdb41ac000-7ffdb41cd000 rw-p 00000000 00:00 0          [stack]", "stack"),
    ("7fc259cdc000-7fc259cdf000 rw-p 00000000 00:00 0 ", "anonymous"),
    ("7fc259cdc000-7fc259cdf000 rw-p 00000000 00:00 0          [anon:glibc]", "anonymous"),
    ("7fc259ecc000-7fc259ed0000 r--p 00000000 00:00 0          [vvar]", "vdso"),
    ("7fc259ed0000-7fc259ed2000 r--p 00000000 00:00 0          [vvar_vclock]", "vdso"),
    ("7fc259ed2000-7fc259ed4000 r-xp 00000000 00:00 0          [vdso]", "vdso"),
    ("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]", "vdso"),
    ("7fc259ed2000-7fc259ed4000 r-xp 00000000 00:00 0          [uprobes]", "other"),
])
def test_maps_line_kinds(line, kind):
    region = procfs._parse_maps_line(line + "\n")
    assert region.kind == kind and _norm(str(region)) == _norm(line)
    fields = line.split(maxsplit=5)
    assert region.path == (fields[5] if len(fields) == 6 else "")
    assert region.inode == int(fields[4]) and region.device == fields[3]
    assert region.offset == int(fields[2], 16) and region.perms == fields[1]


def test_maps_parses_every_line_of_our_own_maps():
    # The interpreter can map or unmap memory between our read and maps()'s own read
    # (a pymalloc arena, a big glibc block); retry until the text was the same before
    # and after, so the comparison is of one and the same /proc/self/maps.
    prm.maps()
    for _ in range(10):
        before = _read_maps_text()
        regions = prm.maps()
        after = _read_maps_text()
        if before == after:
            break
    else:
        pytest.fail("/proc/self/maps kept changing")
    _assert_parsed_exactly(before, regions)
    kinds = {r.kind for r in regions}
    assert {"heap", "stack", "anonymous", "file", "vdso"} <= kinds, kinds
    for region in regions:
        if region.path == "[heap]":
            assert region.kind == "heap"
        elif region.path == "[stack]":
            assert region.kind == "stack"
        elif region.path == "":
            assert region.kind == "anonymous" and region.inode == 0
        elif region.path.startswith("/"):
            assert region.kind == "file"
        elif region.path in ("[vdso]", "[vvar]", "[vsyscall]"):
            assert region.kind == "vdso"


@pytest.fixture
def sleeper():
    """A child that sleeps, once its dynamic loader has mapped libc."""
    child = subprocess.Popen([shutil.which("sleep"), "30"])
    try:
        deadline = time.monotonic() + 10
        while "libc" not in _read_maps_text(child.pid):
            assert time.monotonic() < deadline, "the child never mapped libc"
            time.sleep(0.01)
        yield child
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_maps_parses_another_processes_maps(sleeper):
    # Let the loader finish (libc's segments are mapped one after another), then the
    # sleeping child's maps do not change: one read of the text is the same as maps()'s.
    deadline = time.monotonic() + 10
    while True:
        text = _read_maps_text(sleeper.pid)
        regions = prm.maps(sleeper.pid)
        if text == _read_maps_text(sleeper.pid) and _proc_state(sleeper.pid) == "S":
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    _assert_parsed_exactly(text, regions)
    assert all(r.ours == () for r in regions), "another process has no parts of ours"
    sleep_binary = os.path.realpath(shutil.which("sleep"))
    by_kind = {}
    for region in regions:
        by_kind.setdefault(region.kind, []).append(region)
    assert [r.path for r in by_kind["stack"]] == ["[stack]"]
    assert any(r.path == "[vdso]" for r in by_kind["vdso"])
    files = by_kind["file"]
    assert any(r.path == sleep_binary and r.perms.startswith("r-x") for r in files), sleep_binary
    libc = [r for r in files if os.path.basename(r.path).startswith("libc.so")]
    assert libc and any(r.perms.startswith("r-x") for r in libc)
    assert all(r.inode != 0 and r.device != "00:00" for r in files)


def _proc_state(pid):
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_maps_of_our_own_pid_given_explicitly_lists_our_parts():
    block = prm.malloc(100)
    regions = prm.maps(os.getpid())
    region = prm.region_of(block.address, regions)
    assert region is not None and region.ours, "our own pid is this process: parts known"
    block.free()


@fresh_interpreter
def test_an_mmapped_chunk_is_in_maps_while_live_and_gone_after_free():
    _mmap_threshold_pinned()
    prm.maps()                                    # warm the interpreter's pools
    block = prm.malloc(1 * MiB)
    chunk = prm.chunk_of(block)
    assert chunk.mmapped
    region = prm.region_of(block.address)
    # The kernel may merge the mapping with anonymous neighbours: the region contains it.
    assert region is not None and region.start <= chunk.address
    assert chunk.address + chunk.size <= region.end
    assert region.kind == "anonymous" and region.anonymous and region.perms.startswith("rw")
    assert region.path == "" and region.inode == 0
    # Our part is the whole mapping: the core's 32-byte header, then the chunk.
    ours = [part for part in region.ours if part[2] == "mmapped chunk"]
    assert ours == [(chunk.mapping_start, chunk.mapping_end, "mmapped chunk")]
    mapping_start = chunk.address - 32
    assert chunk.mapping_start == mapping_start and chunk.mapping_end == chunk.address + chunk.size
    assert mapping_start % PAGE == 0 and region.start <= mapping_start

    tombstones = prm.stats().tombstone_calls
    block.free()
    # The seeds' contract: the whole mapping goes back to the kernel, every page of it
    # (mincore asked page by page), the header's page included. (The LD_PRELOAD build
    # leaves a tombstone there instead; this checked build looks every pointer up
    # before it reads a header, so it needs none.)
    length = chunk.mapping_end - mapping_start
    assert prm.mapped_pages(mapping_start, length) == [False] * (length // PAGE)
    assert not prm.is_mapped(block.address)
    regions = prm.maps()
    assert not any(part[2] == "mmapped chunk" for r in regions for part in r.ours)
    assert prm.region_of(block.address, regions) is None
    assert prm.stats().tombstone_calls == tombstones


@fresh_interpreter
def test_our_parts_are_clipped_to_each_region():
    _mmap_threshold_pinned()
    block = prm.malloc(64 * PAGE)
    chunk = prm.chunk_of(block)
    # madvise on the middle pages splits the mapping into three regions (VM flags differ).
    prm.no_huge_pages(chunk.address - 32 + 16 * PAGE, 16 * PAGE)
    regions = [r for r in prm.maps() if r.ours]
    assert len(regions) == 3, regions
    for region in regions:
        (part,) = region.ours
        assert region.start <= part[0] < part[1] <= region.end and part[2] == "mmapped chunk"
    assert [r.ours[0][1] for r in regions[:2]] == [r.ours[0][0] for r in regions[1:]]
    whole = chunk.mapping_end - chunk.mapping_start
    assert sum(r.ours_bytes for r in regions) == whole == chunk.size + 32
    assert regions[0].ours[0][0] == chunk.mapping_start
    assert regions[2].ours[0][1] == chunk.mapping_end
    assert prm.totals_by_kind()["ours"] == whole + sum(s.size for s in prm.segments())
    block.free()


@fresh_interpreter
def test_kinds_heap_segment_totals_and_region_of():
    reserve_glibc_slack()
    _mmap_threshold_pinned()
    small = prm.malloc(64 * KiB)        # grows our heap at the break
    big = prm.malloc(512 * KiB)         # its own mapping
    regions = prm.maps()

    heap = [r for r in regions if r.path == "[heap]"]
    assert len(heap) == 1 and heap[0].kind == "heap" and heap[0].anonymous
    (segment,) = prm.segments()
    assert segment.kind == "brk"
    assert heap[0].ours == ((segment.start, segment.end, "heap segment"),)
    assert heap[0].start <= segment.start < segment.end <= heap[0].end
    assert segment.end == prm.brk() and heap[0].end == _page_up(prm.brk())

    assert prm.region_of(small.address, regions) == heap[0]
    assert prm.region_of(small.address) == heap[0]        # reads maps itself
    big_region = prm.region_of(big.address, regions)
    assert big_region.kind == "anonymous" and big_region.ours
    assert prm.region_of(0, regions) is None
    assert prm.region_of(heap[0].end, regions) != heap[0], "end is one past the region"

    totals = prm.totals_by_kind(regions)
    assert set(totals) == set(procfs.KINDS) | {"ours"}
    for kind in procfs.KINDS:
        assert totals[kind] == sum(r.end - r.start for r in regions if r.kind == kind), kind
    big_chunk = prm.chunk_of(big)
    assert totals["ours"] == segment.size + big_chunk.mapping_end - big_chunk.mapping_start
    assert totals["heap"] == heap[0].size and totals["stack"] > 0 and totals["file"] > 0
    small.free()
    big.free()


# ---- the break --------------------------------------------------------------------------

@fresh_interpreter
def test_trimming_lowers_the_break_and_the_heap_region():
    reserve_glibc_slack()       # glibc's own mallocs will not move the break meanwhile
    pin_seed_thresholds()       # 128 KiB trim threshold, no top pad
    keep = prm.malloc(100)
    blocks = [prm.malloc(100 * KiB) for _ in range(5)]
    high = prm.brk()
    heap = [r for r in prm.maps() if r.kind == "heap"][0]
    assert heap.end == _page_up(high), "the kernel's [heap] ends at the break, page-rounded"
    for block in reversed(blocks):
        block.free()
    low = prm.brk()
    # 500K freed into top; each trim leaves less than the 128K threshold in top.
    assert low < high - 390 * KiB, (hex(high), hex(low))
    heap = [r for r in prm.maps() if r.kind == "heap"][0]
    assert heap.end == _page_up(low), "the kernel agrees: the [heap] region shrank"
    assert not prm.is_mapped(_page_up(low), PAGE)
    assert prm.segments()[0].end == low
    keep.free()


# ---- track() ---------------------------------------------------------------------------

@fresh_interpreter
def test_track_counts_faults_mapping_and_rss_of_touching_a_fresh_block():
    _mmap_threshold_pinned()
    with prm.track():               # first use imports psutil and warms its caches
        pass
    touched = 1024                  # 4 MiB of a 16 MiB block
    with prm.track() as t:
        block = prm.malloc(16 * MiB)
        prm.no_huge_pages(block)
        _touch(_page_up(block.address), touched * PAGE)
    chunk = prm.chunk_of(block)
    mapping = chunk.size + 32       # the chunk and the core's mapping header
    # Faults: the touched pages plus the header page malloc wrote.
    assert touched + 1 <= t.minor_faults <= touched + 1 + FAULT_SLACK, t.minor_faults
    assert t.major_faults == 0
    assert t.break_delta == 0, "an mmapped block leaves the break alone"
    # Mapped bytes: our part is exactly the mapping; all anonymous mappings grew by the
    # mapping, give or take what the interpreter mapped or unmapped for itself meanwhile
    # (a pymalloc arena is 1 MiB; glibc maps blocks of 128 KiB and more on their own).
    assert t.mapped_delta["ours"] == mapping
    assert abs(t.mapped_delta["anonymous"] - mapping) <= 1 * MiB, t.mapped_delta
    assert t.mapped_delta["heap"] == 0 and t.mapped_delta["file"] == 0
    # RSS and USS: the touched pages and the header page, give or take the pages the
    # interpreter's own allocations (psutil's and maps()'s objects) came to use or gave
    # back: measured +1 page here; 64 pages (256 KiB) either way is 6% of the signal.
    for delta in (t.rss_delta, t.uss_delta):
        assert abs(delta - (touched + 1) * PAGE) <= 64 * PAGE, (delta // PAGE, touched)
    block.free()

    with prm.track() as t:
        pass
    assert t.minor_faults <= FAULT_SLACK and t.mapped_delta["ours"] == 0


# ---- physical frames ----------------------------------------------------------------------

@fresh_interpreter
def test_physical_pages_of_touched_and_untouched_pages():
    _mmap_threshold_pinned()
    block = prm.malloc(64 * PAGE)
    prm.no_huge_pages(block)
    _touch(_page_up(block.address), 16 * PAGE)      # pages 1..16 of 65
    frames = prm.physical_pages(block)
    pages = frames.pages
    assert len(pages) == 65 and [p.virtual for p in pages] == \
        [block.address // PAGE * PAGE + i * PAGE for i in range(65)]
    present = [p.present for p in pages]
    assert present == [True] * 17 + [False] * 48
    assert present == prm.residency(block), "pagemap and mincore agree page by page"
    assert not any(p.swapped for p in pages)
    assert all(p.frame is None for p in pages[17:]), "never touched: no frame"
    if not frames.hidden:
        # Privileged (CAP_SYS_ADMIN; root here): the real page frame numbers.
        numbers = [p.frame for p in pages[:17]]
        assert all(isinstance(n, int) and n > 0 for n in numbers), numbers
        assert len(set(numbers)) == 17, "each virtual page has its own frame"
        assert frames.reason == ""
    else:
        # Unprivileged: the kernel zeroes the numbers; we say so instead of reporting 0.
        assert frames.frames == [None] * 65 and "CAP_SYS_ADMIN" in frames.reason
    block.free()


class _FakePagemap(io.BytesIO):
    """/proc/self/pagemap holding crafted entries for the pages from ``address`` on:
    one 8-byte entry per virtual page, at offset (address / page size) * 8."""

    def __init__(self, address, entries):
        super().__init__()
        self.expected = address // PAGE * 8
        self.entries = struct.pack(f"<{len(entries)}Q", *entries)
        self.offset = 0

    def seek(self, offset, whence=0):
        assert whence == 0
        self.offset = offset
        return offset

    def read(self, size=-1):
        assert self.offset == self.expected, "seeked to another page's entry"
        return self.entries[:size]


def _fake_open(address=0, entries=(), error=None):
    def fake(path, mode="r", *args, **kwargs):
        assert path == "/proc/self/pagemap" and mode == "rb"
        if error is not None:
            raise error
        return _FakePagemap(address, entries)
    return fake


PRESENT, SWAPPED = 1 << 63, 1 << 62


def test_physical_pages_decodes_pagemap_entries(monkeypatch):
    address = 0x7F0000000000
    monkeypatch.setattr(procfs, "open", _fake_open(address, [
        PRESENT | 0x1234, 0, SWAPPED | 0x55, PRESENT | (1 << 54) | 7]), raising=False)
    frames = prm.physical_pages(address, 4 * PAGE)
    assert not frames.hidden and frames.reason == ""
    assert [p.virtual for p in frames.pages] == [address + i * PAGE for i in range(4)]
    assert [p.present for p in frames.pages] == [True, False, False, True]
    assert [p.swapped for p in frames.pages] == [False, False, True, False]
    # Bits 0-54 are the frame; bit 55 (soft-dirty) and up are flags.
    assert frames.frames == [0x1234, None, None, (1 << 54) | 7]


def test_physical_pages_hidden_when_the_kernel_zeroes_frames(monkeypatch):
    # What an unprivileged reader gets: present bits set, every frame number 0.
    soft_dirty = 1 << 55
    monkeypatch.setattr(procfs, "open", _fake_open(0x10000, [PRESENT | soft_dirty, PRESENT, 0]),
                        raising=False)
    frames = prm.physical_pages(0x10000, 3 * PAGE)
    assert frames.hidden and "CAP_SYS_ADMIN" in frames.reason
    assert frames.frames == [None, None, None], "never a misleading frame 0"
    assert [p.present for p in frames.pages] == [True, True, False]


def test_physical_pages_not_hidden_when_nothing_is_present(monkeypatch):
    # No present page, no frame to withhold: nothing says the numbers are hidden.
    monkeypatch.setattr(procfs, "open", _fake_open(0x10000, [0, SWAPPED | 9]), raising=False)
    frames = prm.physical_pages(0x10000, 2 * PAGE)
    assert not frames.hidden and frames.frames == [None, None]


def test_physical_pages_hidden_when_pagemap_cannot_be_read(monkeypatch):
    monkeypatch.setattr(procfs, "open", _fake_open(error=PermissionError(
        errno.EACCES, "Permission denied", "/proc/self/pagemap")), raising=False)
    frames = prm.physical_pages(0x10000, 2 * PAGE)
    assert frames.hidden and "pagemap" in frames.reason
    assert frames.frames == [None, None] and not any(p.present for p in frames.pages)


# ---- the process layout ------------------------------------------------------------------

@fresh_interpreter
def test_process_layout_addresses_fall_in_the_expected_regions():
    reserve_glibc_slack()       # the interpreter's mallocs will not move the break now
    core_file = os.path.realpath(_core.__file__)
    with prm.process_layout() as layout:
        brk = prm.brk()
        regions = prm.maps()
        assert prm.brk() == brk
        text = prm.region_of(layout.text, regions)
        assert text.kind == "file" and text.path == core_file and text.perms.startswith("r-x")
        data = prm.region_of(layout.data, regions)
        assert data.kind == "file" and data.path == core_file and data.perms.startswith("rw")
        # .bss lies in the file mapping's last page, or in the anonymous one after it.
        bss = prm.region_of(layout.bss, regions)
        assert bss.perms.startswith("rw") and (bss.path == core_file or bss.kind == "anonymous")
        assert data.start <= layout.data < layout.bss
        # The break is one past the heap's end: its last byte is in [heap].
        assert layout.heap_break == brk
        assert prm.region_of(layout.heap_break - 1, regions).kind == "heap"
        stack = prm.region_of(layout.stack, regions)
        assert stack.kind == "stack" and stack.path == "[stack]"
        mapping = prm.region_of(layout.mapping, regions)
        assert mapping.kind == "anonymous" and mapping.perms.startswith("rw")
        assert prm.is_mapped(layout.mapping, PAGE)
    assert not prm.is_mapped(layout.mapping, PAGE), "the probe page is unmapped after the with"


# ---- residency arguments, huge pages -------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _anonymous_mmap(length):
    import mmap
    address = _libc.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert address not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    return address


def _munmap(address, length):
    assert _libc.munmap(address, length) == 0


def test_residency_of_a_range_with_an_unmapped_part_raises():
    mapping = _anonymous_mmap(3 * PAGE)
    try:
        _munmap(mapping + 2 * PAGE, PAGE)               # a hole at the end
        assert prm.residency(mapping, 2 * PAGE) == [False, False]
        _touch(mapping + PAGE, 1)
        assert prm.residency(mapping, 2 * PAGE) == [False, True]
        assert prm.residency(mapping + PAGE + 100, 10) == [True], "pages the range covers"
        with pytest.raises(ValueError, match="not all mapped"):
            prm.residency(mapping, 3 * PAGE)
        with pytest.raises(ValueError):
            prm.residency(mapping + 2 * PAGE - 1, 2)    # one byte in, one byte out
        assert prm.is_mapped(mapping, 2 * PAGE) and not prm.is_mapped(mapping, 3 * PAGE)
    finally:
        _munmap(mapping, 3 * PAGE)
    assert prm.residency(mapping, 0) == []
    with pytest.raises(ValueError):
        prm.residency(mapping, PAGE)                    # all of it gone now
    with pytest.raises(ValueError):
        prm.residency(mapping, -1)
    with pytest.raises(TypeError):
        prm.residency(mapping)                          # a plain address needs a length


def _vm_flags(address):
    """The VmFlags of the /proc/self/smaps entry containing address."""
    inside = False
    with open("/proc/self/smaps", encoding="utf-8") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                start, end = (int(x, 16) for x in first.split("-"))
                inside = start <= address < end
            elif inside and first == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"{address:#x} is in no smaps entry")


def test_no_huge_pages_sets_the_vma_flag_and_refuses_unmapped_memory():
    mapping = _anonymous_mmap(4 * PAGE)
    try:
        assert "nh" not in _vm_flags(mapping)
        prm.no_huge_pages(mapping + PAGE, 2 * PAGE)
        assert "nh" in _vm_flags(mapping + PAGE) and "nh" in _vm_flags(mapping + 2 * PAGE)
        assert "nh" not in _vm_flags(mapping), "only the pages asked for"
        assert "nh" not in _vm_flags(mapping + 3 * PAGE)
        prm.no_huge_pages(mapping + 3 * PAGE, 0)        # nothing to do
        assert "nh" not in _vm_flags(mapping + 3 * PAGE)
    finally:
        _munmap(mapping, 4 * PAGE)
    with pytest.raises(OSError) as caught:
        prm.no_huge_pages(mapping, PAGE)
    assert caught.value.errno == errno.ENOMEM


def test_thp_setting(monkeypatch):
    setting = prm.thp_setting()
    path = "/sys/kernel/mm/transparent_hugepage/enabled"
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            words = f.read().split()
        assert f"[{setting}]" in words, (setting, words)
        assert setting in ("always", "madvise", "never")
    else:
        assert setting == "unavailable"

    def fake(text):
        def opener(*args, **kwargs):
            if text is None:
                raise FileNotFoundError(path)
            return io.StringIO(text)
        return opener
    monkeypatch.setattr(procfs, "open", fake(None), raising=False)
    assert prm.thp_setting() == "unavailable"
    monkeypatch.setattr(procfs, "open", fake("always madvise [never]\n"), raising=False)
    assert prm.thp_setting() == "never"
