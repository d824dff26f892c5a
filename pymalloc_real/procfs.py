"""What the kernel says about this process: the program break, /proc/<pid>/maps, and
page-fault counters."""
import resource
from dataclasses import dataclass
from typing import List, Optional

import errno
import os

from ._core import ffi, lib

__all__ = ["brk", "page_size", "MapRegion", "maps", "region_of", "faults", "residency",
           "is_mapped"]


def brk():
    """The current program break, read from the kernel with brk(0)."""
    return lib.prm_current_break()


def page_size():
    return lib.prm_page_size()


@dataclass(frozen=True)
class MapRegion:
    """One line of /proc/<pid>/maps."""
    start: int
    end: int
    perms: str          # e.g. "rw-p"
    offset: int
    device: str         # "major:minor"
    inode: int
    path: str           # "" for anonymous memory; "[heap]", "[stack]", a file name, ...

    @property
    def size(self):
        return self.end - self.start

    @property
    def anonymous(self):
        return self.inode == 0 and not self.path.startswith("/")

    def __contains__(self, address):
        return self.start <= address < self.end

    def __str__(self):
        """The region as /proc/<pid>/maps writes it."""
        return (f"{self.start:x}-{self.end:x} {self.perms} {self.offset:08x} {self.device} "
                f"{self.inode} {self.path}").rstrip()


def _parse_maps_line(line):
    fields = line.split(maxsplit=5)
    start, end = (int(x, 16) for x in fields[0].split("-"))
    path = fields[5].rstrip("\n") if len(fields) > 5 else ""
    return MapRegion(start, end, fields[1], int(fields[2], 16), fields[3], int(fields[4]), path)


def maps(pid=None) -> List[MapRegion]:
    """/proc/<pid>/maps (this process by default), parsed."""
    path = f"/proc/{'self' if pid is None else int(pid)}/maps"
    with open(path, encoding="utf-8", errors="replace") as f:
        return [_parse_maps_line(line) for line in f if line.strip()]


def region_of(address, regions=None) -> Optional[MapRegion]:
    """The mapping that contains ``address``, or None."""
    for region in regions if regions is not None else maps():
        if address in region:
            return region
    return None


def faults():
    """(minor, major) page faults of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt



def _address_range(block_or_address, length):
    address = getattr(block_or_address, "address", block_or_address)
    if length is None:
        length = getattr(block_or_address, "size", None)
        if length is None:
            raise TypeError("residency: give a length with a plain address")
    if address < 0 or length < 0:
        raise ValueError("residency: address and length must be >= 0")
    return address, length


def residency(block_or_address, length=None):
    """Per-page resident flags (mincore) for a Block or an address range: one bool per
    page that the range touches. Raises ValueError if part of it is not mapped."""
    address, length = _address_range(block_or_address, length)
    page = page_size()
    pages = (address + length + page - 1) // page - address // page if length else 0
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
    vec = ffi.new("unsigned char[]", (length + 2 * page_size()) // page_size() + 1)
    return lib.prm_residency(address, length, vec) == 0
