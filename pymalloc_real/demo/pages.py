"""The demo's steps about pages: 4 the memory hole and malloc_trim, 5 major faults,
6 virtually contiguous, physically scattered (steps.py runs them).
"""
import mmap
import os
import tempfile
from itertools import accumulate

from .. import heap, introspect
from ..kernel import procfs
from .glibc import reserve_glibc_slack
from ..kernel.space import KiB, MiB, size_text
from .walkthrough import (pin_seed_thresholds)

from .records import FAULT_SLACK, NOT_APPLICABLE, Chart, _Outcome, _verdict


# ---- step 4: the memory hole -----------------------------------------------------------------

def _memory_hole(scene):
    reserve_glibc_slack()
    pin_seed_thresholds()
    # The pin is the last of 65 blocks of 64K. A smaller one could be served from a free
    # remnant lower in the heap (such as the old top of a segment closed because the
    # interpreter moved the break), and would then pin nothing.
    with procfs.track() as grow:
        *blocks, pin = [heap.malloc(64 * KiB) for _ in range(65)]
        for block in blocks + [pin]:
            procfs.no_huge_pages(block)
            block.touch()
    hole = [(b.address, b.size) for b in blocks]
    stages = [("allocated", grow, introspect.ledger(), _resident(hole))]
    with procfs.track() as freed:
        for block in blocks:
            block.free()
    stages.append(("freed", freed, introspect.ledger(), _resident(hole)))
    scene.snapshot("the 64 blocks freed, the pin still in use above them",
                   [(pin.address, "the pin: the 65th block, in use"),
                    (blocks[0].address, "the hole: 64 x 64K freed, below the pin")],
                   {"hole": blocks[0].address, "pin": pin.address})
    with procfs.track() as trimmed:
        heap.malloc_trim(0)
    stages.append(("trim", trimmed, introspect.ledger(), _resident(hole)))
    pin_address, pin_end = pin.address, pin.address + pin.size
    with procfs.track() as unpinned:
        pin.free()
    stages.append(("free(pin)", unpinned, introspect.ledger(), None))
    return _judge_hole(stages, max(b.address for b in blocks), pin_address, pin_end)


def _resident(ranges):
    """(pages, resident pages) of the memory in ``ranges``, each page counted once."""
    page, flags = procfs.page_size(), {}
    for address, size in ranges:
        for i, resident in enumerate(procfs.residency(address, size)):
            flags[address // page + i] = flags.get(address // page + i, False) or resident
    return len(flags), sum(flags.values())


_HOLE_STAGES = {"allocated": "65 x malloc(64K), touched",
                "freed": "all but the last (the pin) freed", "trim": "malloc_trim(0)",
                "free(pin)": "the pin freed"}


def _judge_hole(stages, highest_block, pin_address, pin_end):
    (_, freed, _, (pages, kept)), (_, trimmed, _, (_, left)) = stages[1:3]
    unpinned = stages[3][1]
    page = procfs.page_size()
    released = (kept - left) * page
    verdict, reason = _verdict([
        (pin_address > highest_block, "the pin did not land above the other blocks"),
        (freed.break_delta == 0, f"freeing the blocks moved the break {_signed(freed.break_delta)}"),
        (kept >= 0.95 * pages, f"only {kept} of the hole's {pages} pages stayed resident"),
        # RSS is the whole process's: the interpreter's own work moves it a little.
        (freed.rss_delta > -0.1 * pages * page, f"RSS fell {_signed(freed.rss_delta)} at the frees"),
        (left <= 0.05 * pages, f"{left} of the hole's {pages} pages are resident after malloc_trim"),
        (trimmed.rss_delta <= -0.9 * released, f"RSS changed {_signed(trimmed.rss_delta)} at "
                                               f"malloc_trim, which released {size_text(released)}"),
        (trimmed.after["brk"] >= pin_end, "malloc_trim lowered the break below the pin"),
        (unpinned.after["brk"] <= pin_address,
         f"free(pin) left the break above where the pin was ({_signed(unpinned.break_delta)})"),
    ], f"after the frees the break stayed and {kept} of the hole's {pages} pages stayed resident "
       f"(RSS {_signed(freed.rss_delta)}); malloc_trim released {size_text(released)} with "
       f"MADV_DONTNEED ({left} pages left, RSS {_signed(trimmed.rss_delta)}, break "
       f"{_signed(trimmed.break_delta)}); free(pin) then trimmed the break by "
       f"{size_text(-unpinned.break_delta)}")
    observations = [(name, f"{_HOLE_STAGES[name]}: break {_signed(t.break_delta)}, RSS "
                           f"{_signed(t.rss_delta)}" + (f"; hole pages resident {r[1]} of {r[0]}"
                                                        if r else ""))
                    for name, t, _, r in stages]
    rss = list(accumulate(t.rss_delta for _, t, _, _ in stages))
    return _Outcome(
        prediction="A block in use at the top of the heap (the last of 65 blocks of 64K) pins "
                   "the 4M freed below it: the break cannot move and the freed pages stay "
                   "resident (RSS stays up). malloc_trim gives those pages back with "
                   "madvise(MADV_DONTNEED): RSS drops while the break stays. Once the pin is "
                   "freed the free top exceeds the 128K trim threshold and the break moves "
                   "down past the hole.",
        verdict=verdict, reason=reason, observations=observations,
        measures={"hole_pages": pages, "released": released,
                  "stages": [{"stage": name, "break_delta": t.break_delta,
                              "rss_delta": t.rss_delta, "hole_resident": r[1] if r else None,
                              "ledger": led.as_dict()} for name, t, led, r in stages]},
        chart=Chart("bar", "memory after each stage", "", "MiB",
                    [name for name, _, _, _ in stages],
                    {"RSS above the start": [n / MiB for n in rss],
                     "free but resident (ledger)": [led.free_resident / MiB
                                                    for _, _, led, _ in stages]}))


def _signed(n):
    return f"{'+' if n > 0 else '-'}{size_text(abs(n))}" if n else "unchanged"


# ---- step 5: major faults --------------------------------------------------------------------

def _major_faults(scene):
    size, attempts = 4 * MiB, []
    for directory in _candidate_directories():
        try:
            cold, warm = _read_evicted_file(directory, size, scene)
        except OSError as error:
            attempts.append(f"{directory}: {error.strerror or error}")
            continue
        if cold["evicted"] < cold["pages"] // 2:
            attempts.append(f"{directory}: page-cache eviction had no effect on this "
                            f"filesystem (mincore: {cold['pages'] - cold['evicted']} of "
                            f"{cold['pages']} pages still resident)")
            continue
        return _judge_major(directory, cold, warm, attempts)
    return _Outcome(prediction=_MAJOR_PREDICTION, verdict=NOT_APPLICABLE,
                    reason="no directory tried lets this process evict a file from the page "
                           "cache: " + "; ".join(attempts),
                    measures={"attempts": attempts})


_MAJOR_PREDICTION = ("A page read through a file mapping after the file was evicted from the "
                     "page cache must come from disk: a major fault (the mapping is "
                     "MADV_RANDOM, so the kernel reads no neighbours ahead: one per page). "
                     "Read again with the file cached, the same pages cost no major fault.")


def _candidate_directories():
    """Where to put the file: the temporary directory first, then the usual disk-backed
    ones, since /tmp may be tmpfs, whose pages cannot be evicted."""
    seen, out = set(), []
    for directory in (tempfile.gettempdir(), "/var/tmp", os.getcwd()):
        real = os.path.realpath(directory)
        if real not in seen and os.path.isdir(real) and os.access(real, os.W_OK):
            seen.add(real)
            out.append(directory)
    return out


def _read_evicted_file(directory, size, scene):
    """Write a file, fsync it (only clean pages can be dropped), evict it with
    posix_fadvise(DONTNEED), then read it through a mapping twice: cold and warm."""
    fd, path = tempfile.mkstemp(prefix="pymalloc-real-demo-", dir=directory)
    try:
        chunk = bytes(range(256)) * (MiB // 256)
        for _ in range(size // MiB):
            os.write(fd, chunk)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        cold = _read_through_mapping(fd, path, size, scene)
        warm = _read_through_mapping(fd, path, size)
    finally:
        os.close(fd)
        os.unlink(path)
    return cold, warm


def _read_through_mapping(fd, path, size, scene=None):
    page = procfs.page_size()
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
        mapped.madvise(mmap.MADV_RANDOM)
        inode = os.fstat(fd).st_ino
        regions = procfs.maps()
        region = next(r for r in regions
                      if r.inode == inode and r.path == os.path.realpath(path))
        resident = procfs.residency(region.start, size)
        before = procfs.faults()
        for offset in range(0, size, page):
            mapped[offset]                  # one read per page
        after = procfs.faults()
        resident_after = procfs.residency(region.start, size)
        if scene is not None:
            scene.snapshot("the file mapped, after eviction, and read once",
                           [(region.start, f"{size_text(size)} file, read")], regions=regions)
    return {"pages": len(resident), "evicted": resident.count(False),
            "minor": after[0] - before[0], "major": after[1] - before[1],
            "resident_after": sum(resident_after)}


def _judge_major(directory, cold, warm, attempts):
    evicted, major = cold["evicted"], cold["major"]
    per_fault = evicted / major if major else 0
    verdict, reason = _verdict([
        (major >= 1, f"reading {evicted} evicted pages took no major fault"),
        (major <= evicted + FAULT_SLACK, f"{major} major faults for {evicted} evicted pages"),
        (cold["resident_after"] == cold["pages"], "the file is not all resident after reading"),
        (warm["major"] == 0, f"reading the cached file again took {warm['major']} major faults"),
    ], f"reading {evicted} evicted pages took {major} major faults ({per_fault:.1f} pages "
       f"per fault); read again from the page cache: {warm['major']} major, "
       f"{warm['minor']} minor (the kernel maps cached neighbours around each fault)")
    return _Outcome(
        prediction=_MAJOR_PREDICTION, verdict=verdict, reason=reason,
        observations=[("file", f"{size_text(cold['pages'] * procfs.page_size())} in "
                               f"{directory}; {evicted} of {cold['pages']} pages evicted")]
                     + [("tried", a) for a in attempts]
                     + [("cold read", f"{major} major, {cold['minor']} minor faults"),
                        ("warm read", f"{warm['major']} major, {warm['minor']} minor faults")],
        measures={"directory": directory, "cold": cold, "warm": warm, "attempts": attempts},
        chart=Chart("bar", "reading a file through mmap, one byte per page", "", "page faults",
                    ["evicted (cold)", "cached (warm)"],
                    {"major": [major, warm["major"]], "minor": [cold["minor"], warm["minor"]]}))


# ---- step 6: virtually contiguous, physically scattered ----------------------------------------

_FRAMES_SHOWN = 24     # frame numbers listed for people; --json has them all


def _scattered(scene):
    # 256 pages: the kernel's per-CPU free lists often hold runs of consecutive frames
    # (a freshly split large block is handed out in order), so a short block can land
    # in one run by chance.
    page = procfs.page_size()
    block = heap.malloc(256 * page)
    try:
        procfs.no_huge_pages(block)
        block.touch()
        frames = procfs.physical_pages(block)
        scene.snapshot("the 256-page block alive and touched",
                       [(block.address, "the 256-page block")], {"blk": block.address})
    finally:
        block.free()
    prediction = ("A block's pages are contiguous in virtual memory, but each is backed by "
                  "whatever physical page frame the kernel had free at its first touch: the "
                  "frame numbers are not consecutive.")
    if frames.hidden:
        return _Outcome(prediction, NOT_APPLICABLE, frames.reason)
    numbers = frames.frames
    present = [n for n in numbers if n is not None]
    breaks = sum(b != a + 1 for a, b in zip(present, present[1:]))
    verdict, reason = _verdict([
        (len(present) == len(numbers), f"{len(numbers) - len(present)} touched pages have no frame"),
        (len(set(present)) == len(present), "two pages share a frame"),
        (breaks >= 1, f"all {len(numbers)} frames are consecutive"),
    ], f"{len(numbers)} virtually consecutive pages sit in {len(set(present))} distinct frames; "
       f"{breaks} of the {len(numbers) - 1} steps from one page to the next are not to the "
       "next frame")
    return _Outcome(
        prediction, verdict, reason,
        observations=[("frames", " ".join(f"{n:#x}" for n in present[:_FRAMES_SHOWN])
                       + (f" ... ({len(present) - _FRAMES_SHOWN} more)"
                          if len(present) > _FRAMES_SHOWN else ""))],
        measures={"frames": numbers, "breaks": breaks, "pages": len(numbers)},
        chart=Chart("scatter", "physical frame of each virtual page", "virtual page",
                    "frame number", [], {"frame": present}))
