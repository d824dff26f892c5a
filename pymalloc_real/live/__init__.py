"""The live view: another running process's allocator, seen from outside.

A process on the library (the LD_PRELOAD build, or a Python process that imported
pymalloc_real) exports a directory, ``pymalloc_real_live`` (csrc/core/publish.c), that
says where its allocator's structures are and how they are laid out. ``attach(pid)``
finds it through the process's maps and the library's dynamic symbols, and every
look copies the structures with process_vm_readv between two reads of their locks'
sequence counters, so the process is never stopped and the copy is consistent.

    >>> from pymalloc_real import live
    >>> p = live.attach(pid)
    >>> p.stats().in_use_bytes, p.chunks()[:3], p.ledger().as_text()
    >>> view = p.snapshot()            # one copy, several views of it
    >>> view.chunks(), view.bins(), view.ledger(), view.size_classes()

The results are the dataclasses of ``pymalloc_real.introspect`` (HeapStats, Chunk,
Bins, Arena, Segment, Ledger), as ``prm.stats()`` & co give for this process.
``text`` renders them for people (``pymalloc-real heap PID`` and ``top PID``).
"""
from dataclasses import dataclass
from typing import List

from .directory import Directory, find_directory
from .remote import LiveViewError, RemoteMemory, command_name, rss_and_faults
from .snapshot import take_snapshot
from .walk import Walker
from . import naming, text   # named mappings; heap_text, top_text: the live view for people

__all__ = ["attach", "LiveProcess", "LiveSnapshot", "LiveViewError", "SizeClass", "Counters",
           "RemoteMemory", "naming_supported"]


@dataclass(frozen=True)
class SizeClass:
    """Live chunks whose size is at most `limit` (and more than the class below)."""
    limit: int              # chunk bytes; 0 for the mmapped chunks' class
    chunks: int
    bytes: int


@dataclass(frozen=True)
class Counters:
    """What the kernel says about the process at the snapshot (from /proc)."""
    rss: int
    minor_faults: int
    major_faults: int


class LiveSnapshot:
    """One consistent copy of the process's allocator, and the views of it."""

    def __init__(self, process, snapshot, counters):
        self.process, self.raw, self.counters = process, snapshot, counters
        self._walker = Walker(snapshot, process.directory)
        self._views = {}

    @property
    def taken(self):
        return self.raw.taken

    @property
    def report(self):
        """The shim's call counters ({"calls": {...}, "bytes_requested", ...}) when the
        process counts them (PYMALLOC_REAL_OPTIONS with stats=), else None."""
        return self.raw.report

    def requests_by_size(self):
        """{"<=LIMIT": calls} of the allocating calls by requested size since the program
        started, keyed as its exit report keys them; None unless it counts calls."""
        if self.report is None:
            return None
        return {f"<={0 if bits == 0 else (1 << bits) - 1}": count
                for bits, count in enumerate(self.report["size_classes"]) if count}

    def _walk(self, name):
        """A view of the copy, computed once (the copy never changes)."""
        if name in self._views:
            return self._views[name]
        try:
            self._views[name] = getattr(self._walker, name)()
            return self._views[name]
        except KeyError as error:
            raise LiveViewError(f"process {self.process.pid}: a chunk at {error.args[0]:#x} "
                                "lies outside every heap segment of the copy") from None

    def stats(self):
        return self._walk("stats")

    def chunks(self):
        return self._walk("chunks")

    def bins(self):
        return self._walk("bins")

    def arenas(self):
        return self._walk("arenas")

    def segments(self):
        return self._walk("segments")

    def ledger(self):
        return self._walk("ledger")

    def size_classes(self) -> List[SizeClass]:
        """Chunks in use by size: powers of two from 32 bytes, then the mmapped ones
        (limit 0)."""
        classes = self._walk("size_classes")      # {limit: [chunks, bytes]}
        return [SizeClass(limit, *classes[limit])
                for limit in sorted(classes, key=lambda limit: (limit == 0, limit))]


class LiveProcess:
    """A running process on the library, attached for looking (see the module doc)."""

    def __init__(self, pid):
        self.pid = int(pid)
        self.memory = RemoteMemory(self.pid)
        try:
            self.directory: Directory = find_directory(self.memory, self.pid)
        except BaseException:
            self.memory.close()
            raise
        self.command = command_name(self.pid)

    @property
    def library(self):
        return self.directory.library

    def close(self):
        self.memory.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def snapshot(self) -> LiveSnapshot:
        counters = Counters(*rss_and_faults(self.pid))
        return LiveSnapshot(self, take_snapshot(self.memory, self.directory), counters)

    def stats(self):
        return self.snapshot().stats()

    def chunks(self):
        return self.snapshot().chunks()

    def bins(self):
        return self.snapshot().bins()

    def arenas(self):
        return self.snapshot().arenas()

    def segments(self):
        return self.snapshot().segments()

    def ledger(self):
        return self.snapshot().ledger()

    def __repr__(self):
        return f"<LiveProcess {self.pid} ({self.command}) on {self.library}>"


def attach(pid) -> LiveProcess:
    """The allocator of running process `pid`, for looking. Raises LiveViewError when
    there is no such process, it does not use pymalloc_real, or we may not read it."""
    if int(pid) <= 0:
        raise LiveViewError(f"not a process id: {pid}")
    return LiveProcess(pid)


def naming_supported() -> bool:
    """Whether this kernel names anonymous mappings (prctl PR_SET_VMA_ANON_NAME):
    tried on a fresh page of this process."""
    return naming.probe_naming() == 0
