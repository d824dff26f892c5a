"""What the kernel says about a process: the program break, /proc/<pid>/maps with the
kind of every region (and which of it is ours), page faults from getrusage and
/proc/<pid>/stat, page residency (mincore), physical frame numbers (pagemap),
transparent huge pages, the process layout, and ``track()`` for before/after deltas.
"""
import errno
import os
import resource
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .._core import ffi, lib
from ..reprs import readable

__all__ = ["brk", "page_size", "MapRegion", "maps", "region_of", "totals_by_kind",
           "faults", "faults_from_stat", "residency", "is_mapped", "mapped_pages", "PhysicalPage",
           "PageFrames", "physical_pages", "no_huge_pages", "thp_setting", "Layout",
           "process_layout", "Tracking", "track"]

KINDS = ("heap", "stack", "anonymous", "file", "vdso", "other")


def brk():
    """The current program break, read from the kernel with brk(0)."""
    return lib.prm_current_break()


def page_size():
    return lib.prm_page_size()


# ---- /proc/<pid>/maps -------------------------------------------------------------------

@readable(addresses=("ours",))
@dataclass(frozen=True)
class MapRegion:
    """One line of /proc/<pid>/maps, with its kind and the parts that are ours."""
    start: int
    end: int
    perms: str          # e.g. "rw-p"
    offset: int
    device: str         # "major:minor"
    inode: int
    path: str           # "" for anonymous memory; "[heap]", "[stack]", a file name, ...
    kind: str           # heap, stack, anonymous, file, vdso (vdso/vvar/vsyscall) or other
    # Parts of the region that belong to pymalloc_real's core, as (start, end, what)
    # with what "heap segment" or "mmapped chunk"; only known for this process.
    ours: Tuple[Tuple[int, int, str], ...] = field(default=())

    @property
    def size(self):
        return self.end - self.start

    @property
    def anonymous(self):
        return self.kind in ("anonymous", "heap", "stack")

    @property
    def ours_bytes(self):
        return sum(end - start for start, end, _ in self.ours)

    def __contains__(self, address):
        return self.start <= address < self.end

    def __str__(self):
        """The region as /proc/<pid>/maps writes it."""
        return (f"{self.start:x}-{self.end:x} {self.perms} {self.offset:08x} {self.device} "
                f"{self.inode} {self.path}").rstrip()


def _kind_of(path, inode):
    if path == "[heap]":
        return "heap"
    if path.startswith("[stack"):
        return "stack"
    if path in ("[vdso]", "[vvar]", "[vsyscall]") or path.startswith("[vvar"):
        return "vdso"
    if path == "" or path.startswith("[anon"):
        return "anonymous"
    if path.startswith("/") or inode != 0:
        return "file"
    return "other"


def _parse_maps_line(line):
    fields = line.split(maxsplit=5)
    start, end = (int(x, 16) for x in fields[0].split("-"))
    inode = int(fields[4])
    path = fields[5].rstrip("\n") if len(fields) > 5 else ""
    return MapRegion(start, end, fields[1], int(fields[2], 16), fields[3], inode, path,
                     _kind_of(path, inode))


def _our_ranges():
    """(start, end, what) of every heap segment and mmapped chunk of the core."""
    from .. import introspect   # the core API: it imports nothing of this wing
    ranges = [(s.start, s.end, "heap segment") for s in introspect.segments()]
    ranges += [(c.mapping_start, c.mapping_end, "mmapped chunk")
               for c in introspect.chunks() if c.kind == "mmapped"]
    return ranges


def _require_int(value, what, name, low=0):
    """TypeError unless ``value`` is an int (bools are not), ValueError below ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: {name} must be an int, not {type(value).__name__}")
    if value < low:
        raise ValueError(f"{what}: {name} must be >= {low}, got {value}")
    return value


def maps(pid=None) -> List[MapRegion]:
    """/proc/<pid>/maps (this process by default), parsed. For this process, each
    region also lists the parts that are pymalloc_real's heap segments and mmapped
    chunks."""
    if pid is not None:
        _require_int(pid, "maps", "pid", low=1)
    path = f"/proc/{'self' if pid is None else pid}/maps"
    with open(path, encoding="utf-8", errors="replace") as f:
        regions = [_parse_maps_line(line) for line in f if line.strip()]
    if pid is not None and int(pid) != os.getpid():
        return regions
    ranges = _our_ranges()
    out = []
    for region in regions:
        parts = tuple((max(s, region.start), min(e, region.end), what)
                      for s, e, what in ranges if s < region.end and e > region.start)
        out.append(MapRegion(**{**region.__dict__, "ours": parts}) if parts else region)
    return out


def region_of(address, regions=None) -> Optional[MapRegion]:
    """The mapping that contains ``address``, or None."""
    _require_int(address, "region_of", "address")
    for region in regions if regions is not None else maps():
        if address in region:
            return region
    return None


def totals_by_kind(regions=None) -> Dict[str, int]:
    """Mapped bytes per kind, every kind present as a key, plus "ours": the bytes of
    pymalloc_real's segments and mmapped chunks (also counted under their kind)."""
    totals = dict.fromkeys(KINDS, 0)
    totals["ours"] = 0
    regions = regions if regions is not None else maps()
    if not all(isinstance(region, MapRegion) for region in regions):
        raise TypeError("totals_by_kind: expected a list of MapRegion (what maps() returns)")
    for region in regions:
        totals[region.kind] += region.size
        totals["ours"] += region.ours_bytes
    return totals


# ---- page faults --------------------------------------------------------------------------

def faults():
    """(minor, major) page faults of this process so far, from getrusage(2)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


def faults_from_stat(pid=None):
    """(minor, major) page faults of a process (this one by default), from
    /proc/<pid>/stat, fields 10 and 12 (minflt, majflt)."""
    if pid is not None:
        _require_int(pid, "faults_from_stat", "pid", low=1)
    with open(f"/proc/{'self' if pid is None else pid}/stat", encoding="utf-8") as f:
        text = f.read()
    # The command name, field 2, is in parentheses and may contain spaces.
    rest = text[text.rindex(")") + 2:].split()
    return int(rest[7]), int(rest[9])


# ---- pages: residency, frames, huge pages ---------------------------------------------------

def _address_range(block_or_address, length, what):
    address = getattr(block_or_address, "address", block_or_address)
    if isinstance(address, bool) or not isinstance(address, int):
        raise TypeError(f"{what}: expected a Block or an int address, not "
                        f"{type(block_or_address).__name__}")
    if length is None:
        length = getattr(block_or_address, "size", None)
        if length is None:
            raise TypeError(f"{what}: give a length with a plain address")
    _require_int(address, what, "address")
    _require_int(length, what, "length")
    return address, length


def _pages_covering(address, length):
    page = page_size()
    return (address + length + page - 1) // page - address // page if length else 0


def residency(block_or_address, length=None):
    """Per-page resident flags (mincore, in C) for a Block or an address range: one bool
    per page the range touches. Raises ValueError if part of it is not mapped."""
    address, length = _address_range(block_or_address, length, "residency")
    pages = _pages_covering(address, length)
    vec = ffi.new("unsigned char[]", max(pages, 1))
    rc = lib.prm_residency(address, length, vec)
    if rc == -errno.ENOMEM:
        raise ValueError(f"residency: [{address:#x}, {address + length:#x}) is not all mapped")
    if rc != 0:
        raise OSError(-rc, os.strerror(-rc))
    return [bool(vec[i] & 1) for i in range(pages)]


def is_mapped(address, length=1):
    """True if every page of [address, address + length) is mapped in this process,
    asked of the kernel directly (mincore), without reading /proc."""
    _address_range(address, length, "is_mapped")
    vec = ffi.new("unsigned char[]", max(_pages_covering(address, length), 1))
    return lib.prm_residency(address, length, vec) == 0


def mapped_pages(address, length=1):
    """One bool per page of [address, address + length): is that page mapped? Each
    page is asked of the kernel on its own (mincore), so a range that is partly mapped
    says which part; ``is_mapped`` only says whether all of it is."""
    _address_range(address, length, "mapped_pages")
    page = page_size()
    first = address - address % page
    return [is_mapped(first + i * page, 1) for i in range(_pages_covering(address, length))]


@readable
@dataclass(frozen=True)
class PhysicalPage:
    """One virtual page and the physical page frame behind it (/proc/self/pagemap)."""
    virtual: int            # page address
    present: bool           # backed by RAM now
    swapped: bool
    frame: Optional[int]    # page frame number; None if not present or hidden


@readable
@dataclass(frozen=True)
class PageFrames:
    """The frames behind a range of pages. ``hidden`` is True when the kernel withholds
    frame numbers (reading pagemap without CAP_SYS_ADMIN gives zeros); ``reason`` then
    says so, and every ``frame`` is None rather than a misleading 0."""
    pages: List[PhysicalPage]
    hidden: bool
    reason: str = ""

    @property
    def frames(self):
        return [p.frame for p in self.pages]


_PFN_MASK = (1 << 55) - 1


def physical_pages(block_or_address, length=None) -> PageFrames:
    """The physical page frames behind a Block (or an address range) of this process.
    Touch the memory first: a page never touched has no frame."""
    address, length = _address_range(block_or_address, length, "physical_pages")
    page = page_size()
    first = address // page
    count = _pages_covering(address, length)
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first * 8)
            raw = f.read(count * 8)
    except PermissionError as error:
        return PageFrames([PhysicalPage((first + i) * page, False, False, None)
                           for i in range(count)], True,
                          f"/proc/self/pagemap cannot be read: {error}")
    entries = struct.unpack(f"<{count}Q", raw)
    present = [bool(e >> 63 & 1) for e in entries]
    hidden = any(present) and all(e & _PFN_MASK == 0 for e, p in zip(entries, present) if p)
    pages = [PhysicalPage((first + i) * page, present[i], bool(e >> 62 & 1),
                          (e & _PFN_MASK) if present[i] and not hidden else None)
             for i, e in enumerate(entries)]
    reason = ("the kernel hides page frame numbers from processes without CAP_SYS_ADMIN "
              "(pagemap reads them as 0)") if hidden else ""
    return PageFrames(pages, hidden, reason)


def no_huge_pages(block_or_address, length=None):
    """Mark a range MADV_NOHUGEPAGE so it faults one 4 KiB page at a time even where
    transparent huge pages are on: fault counts then mean pages."""
    address, length = _address_range(block_or_address, length, "no_huge_pages")
    rc = lib.prm_no_huge_pages(address, length)
    if rc != 0:
        raise OSError(-rc, f"madvise(MADV_NOHUGEPAGE): {os.strerror(-rc)}")


def thp_setting():
    """The machine's transparent-huge-page mode ("always", "madvise", "never"), or
    "unavailable"."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else text.strip()


# ---- the process layout -------------------------------------------------------------------

@readable
@dataclass(frozen=True)
class Layout:
    """Addresses taken in C (csrc/probe/layout.c), one per part of the address space."""
    text: int           # a function of the core's shared object
    data: int           # an initialised global
    bss: int            # an uninitialised global
    heap_break: int     # the program break
    stack: int          # a local variable of the probing function
    mapping: int        # a fresh one-page anonymous mmap (unmapped when the with ends)


class process_layout:
    """``with process_layout() as layout:`` gives a Layout; the probe's anonymous page
    stays mapped inside the with, so /proc/self/maps can be read beside it."""

    def __enter__(self):
        self._raw = ffi.new("prm_layout *")
        if lib.prm_process_layout(self._raw) != 0:
            raise OSError(ffi.errno, "process_layout: mmap of the probe page failed")
        r = self._raw
        return Layout(r.text, r.data, r.bss, r.heap_break, r.stack, r.mapping)

    def __exit__(self, *exc):
        lib.prm_process_layout_release(self._raw)
        return False


# ---- before/after ----------------------------------------------------------------------------

@readable
@dataclass
class Tracking:
    """Deltas measured by ``track()``: filled in when the with block ends."""
    minor_faults: int = 0
    major_faults: int = 0
    break_delta: int = 0
    mapped_delta: Dict[str, int] = field(default_factory=dict)   # per kind, see totals_by_kind
    rss_delta: int = 0
    uss_delta: int = 0
    before: Dict[str, object] = field(default_factory=dict)
    after: Dict[str, object] = field(default_factory=dict)


def _snapshot(faults_first):
    # The snapshot itself reads /proc (psutil's smaps, our maps), which faults a little;
    # reading the fault counters last on entry and first on exit keeps that out.
    import psutil
    counts = faults() if faults_first else None
    memory = psutil.Process().memory_full_info()
    snapshot = {"brk": brk(), "mapped": totals_by_kind(), "rss": memory.rss, "uss": memory.uss}
    snapshot["minor"], snapshot["major"] = counts if counts else faults()
    return snapshot


class track:
    """``with track() as t: ...`` measures what the block of code cost the process:
    ``t.minor_faults``, ``t.major_faults``, ``t.break_delta``, ``t.mapped_delta`` (bytes
    per kind of mapping), ``t.rss_delta`` and ``t.uss_delta`` (psutil). The fault
    counters are read innermost, so the snapshots' own reading of /proc is not counted."""

    def __enter__(self):
        self.result = Tracking()
        self.result.before = _snapshot(faults_first=False)
        return self.result

    def __exit__(self, *exc):
        after = _snapshot(faults_first=True)
        before = self.result.before
        r = self.result
        r.after = after
        r.minor_faults = after["minor"] - before["minor"]
        r.major_faults = after["major"] - before["major"]
        r.break_delta = after["brk"] - before["brk"]
        r.mapped_delta = {k: after["mapped"][k] - before["mapped"][k] for k in after["mapped"]}
        r.rss_delta = after["rss"] - before["rss"]
        r.uss_delta = after["uss"] - before["uss"]
        return False
