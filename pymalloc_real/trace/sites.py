"""Call sites and the timeline of a recording (issue 15): what the report shows.

``call_sites(raw)`` turns a decoded recording (``rawstream.RawRecording``) into
:class:`CallSite` objects: each distinct native stack that allocated, its frames named
after the run (``symbolise``), and what it allocated: calls, bytes, the bytes it held
when the whole program's live bytes peaked, and the bytes still live at exit.
``timeline(raw)`` gives the :class:`Sample` series (live, heap, mmapped, RSS, faults,
events). Bytes are the sizes the program asked for.

With sampled stacks (``stacks=sampled``, the default) only some allocations carry a
stack: an allocation of s bytes was sampled with probability p = 1 - exp(-s / mean), so
each sampled one stands for 1/p calls and s/p bytes (the unbiased estimate tcmalloc and
jemalloc use); the numbers are then estimates, exact only with ``stacks=all``.

Symbolising reads the process's ``/proc/PID/maps`` as it was at exit (the recorder
writes it into the recording) to find each return address's object, then asks binutils'
``addr2line`` for the function and file:line (debug info where the object has it), and
``nm`` for the nearest symbol where it has none; the object's path is kept either way.
"""


import bisect
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional, Tuple

from .model import TraceError


@dataclass(frozen=True)
class Frame:
    """One frame of a call stack: the return address, and where it is (None when
    unknown): the function, its source file and line, the object (library or program)
    it belongs to."""
    address: int
    function: Optional[str]
    file: Optional[str]
    line: Optional[int]
    library: Optional[str]

    def __str__(self):
        name = self.function or f"{self.address:#x}"
        if self.file and self.line:
            return f"{name} ({os.path.basename(self.file)}:{self.line})"
        return f"{name} in {os.path.basename(self.library)}" if self.library else name


@dataclass
class CallSite:
    """A call stack that allocated (``frames`` innermost first, the allocator's own
    frames left out) and what it allocated: ``calls`` and ``bytes`` over the run,
    ``peak_bytes`` live from this site at the moment the program's live bytes peaked,
    ``leaked_bytes`` live at exit. Estimates when ``sampled``."""
    frames: Tuple[Frame, ...]
    calls: int
    bytes: int
    peak_bytes: int
    leaked_bytes: int
    sampled: bool = False

    @property
    def function(self):
        """The innermost named function: the one that called malloc."""
        return next((f.function for f in self.frames if f.function), None)

    def __str__(self):
        return " <- ".join(str(f) for f in self.frames[:4])


@dataclass(frozen=True)
class Sample:
    """One point of the timeline: nanoseconds since the recording started, the bytes the
    program had live (asked for and not yet freed), the heap's and the mmapped chunks'
    bytes from the OS, the resident set, the minor and major faults so far, and the
    event that took it (None for the 10 ms tick, else 'brk', 'trim', 'mmap' or
    'munmap')."""
    t_ns: int
    live: int
    heap: int
    mmapped: int
    rss: int
    minflt: int
    majflt: int
    event: Optional[str]


# ---- from the decoder's totals ------------------------------------------------------------

def timeline(raw):
    """The recording's samples as :class:`Sample` objects, in time order."""
    return [Sample(s.t_ns, s.live, s.heap, s.mmapped, s.rss, s.minflt, s.majflt, s.event)
            for s in raw.samples]


def call_sites(raw, symbols=None):
    """The recording's call sites, by peak bytes (then bytes) largest first. Raises
    TraceError when it recorded no stacks. ``symbols`` is a :class:`Symboliser` (made
    from the recording's maps when None)."""
    if not raw.stacks_recorded:
        why = ("this build of the library has no unwinder (install libunwind-dev: "
               "`make unwind`, then rebuild)" if raw.flags & 4 else
               "it was made with stacks=off")
        raise TraceError(f"the recording of pid {raw.pid} has no call stacks: {why}")
    symbols = symbols or Symboliser(raw.maps)
    merged = {}
    for stack, totals in raw.site_totals.items():
        frames = symbols.strip_own(raw.stacks.get(stack, ()))
        entry = merged.setdefault(frames, [0.0, 0.0, 0.0, 0.0])
        for i, value in enumerate(totals):
            entry[i] += value
    named = symbols.frames({a for frames in merged for a in frames})
    sites = [CallSite(tuple(named[a] for a in frames), round(c), round(b), round(p),
                      round(max(live, 0)), bool(raw.sample_mean))
             for frames, (c, b, p, live) in merged.items()]
    sites.sort(key=lambda s: (s.peak_bytes, s.bytes, s.calls), reverse=True)
    return sites


# ---- symbols ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Mapping:
    start: int
    end: int
    offset: int
    path: str


def parse_maps(text):
    """The file-backed mappings of a /proc/PID/maps text, by start address."""
    found = []
    for line in (text or "").splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        start, _, end = fields[0].partition("-")
        found.append(_Mapping(int(start, 16), int(end, 16), int(fields[2], 16),
                              fields[5].strip()))
    found.sort(key=lambda m: m.start)
    return found


class Symboliser:
    """Names return addresses of one process, given its maps at exit."""

    def __init__(self, maps_text):
        self.mappings = parse_maps(maps_text)
        self._starts = [m.start for m in self.mappings]
        self._bias = {}
        for m in self.mappings:         # the load address of each object
            self._bias[m.path] = min(self._bias.get(m.path, m.start - m.offset),
                                     m.start - m.offset)
        self._symbols = {}

    def object_of(self, address):
        """The mapping holding ``address``, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i >= 0 and self.mappings[i].start <= address < self.mappings[i].end:
            return self.mappings[i]
        return None

    def strip_own(self, frames):
        """The stack without its leading frames in the allocator's library (the first
        frame is always the recorder's): starts at malloc's caller."""
        if not frames:
            return ()
        own = self.object_of(frames[0])
        if own is None:
            return tuple(frames)
        i = 0
        while i < len(frames) and self.object_of(frames[i]) is not None \
                and self.object_of(frames[i]).path == own.path:
            i += 1
        return tuple(frames[i:])

    def _relative(self, mapping, address):
        """The address as the object's own (link-time) address: what addr2line takes."""
        if _elf_type(mapping.path) == 2:        # ET_EXEC: loaded where it was linked
            return address
        return address - self._bias[mapping.path]

    def frames(self, addresses):
        """{address: Frame} for return addresses (looked up one byte back, inside the
        call instruction)."""
        result = {}
        by_object = {}
        for address in addresses:
            mapping = self.object_of(address)
            if mapping is None:
                result[address] = Frame(address, None, None, None, None)
            else:
                by_object.setdefault(mapping, []).append(address)
        by_path = {}
        for mapping, found in by_object.items():
            by_path.setdefault(mapping.path, []).extend((mapping, a) for a in found)
        for path, pairs in by_path.items():
            relative = [max(self._relative(m, a) - 1, 0) for m, a in pairs]
            names = _addr2line(path, relative)
            for (m, address), rel, (function, file, line) in zip(pairs, relative, names):
                if function is None:
                    function = self._nearest_symbol(path, rel)
                result[address] = Frame(address, function, file, line, path)
        return result

    def _nearest_symbol(self, path, address):
        table = self._symbols.get(path)
        if table is None:
            table = self._symbols[path] = _symbol_table(path)
        i = bisect.bisect_right(table[0], address) - 1
        return table[1][i] if i >= 0 else None


def _elf_type(path, _cache={}):
    if path not in _cache:
        try:
            with open(path, "rb") as f:
                head = f.read(18)
            _cache[path] = int.from_bytes(head[16:18], "little") if head[:4] == b"\x7fELF" else 0
        except OSError:
            _cache[path] = 0
    return _cache[path]


def _addr2line(path, addresses):
    """[(function, file, line)] for addresses of the object at ``path`` (Nones where
    binutils knows nothing, or is missing)."""
    unknown = [(None, None, None)] * len(addresses)
    tool = shutil.which("addr2line")
    if tool is None or not os.path.exists(path) or not addresses:
        return unknown
    try:
        proc = subprocess.run([tool, "-f", "-C", "-e", path],
                              input="\n".join(f"{a:#x}" for a in addresses),
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return unknown
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 2 * len(addresses):
        return unknown
    found = []
    for function, place in zip(lines[0::2], lines[1::2]):
        file, _, line = place.split(" (discriminator")[0].rpartition(":")
        number = int(line) if line.isdigit() and line != "0" else None
        found.append((None if function == "??" else function,
                      None if file in ("", "??") else file, number))
    return found


def _symbol_table(path):
    """(sorted addresses, names) of the object's function symbols, from ``nm`` (its
    symbol table, else its dynamic one)."""
    tool = shutil.which("nm")
    entries = {}
    if tool is not None and os.path.exists(path):
        for extra in ([], ["-D"]):
            try:
                proc = subprocess.run([tool, "-C", "--defined-only", *extra, path],
                                      capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.SubprocessError):
                continue
            for line in proc.stdout.splitlines():
                fields = line.split(None, 2)
                if len(fields) == 3 and fields[1] in "TtWwi":
                    try:
                        entries.setdefault(int(fields[0], 16), fields[2])
                    except ValueError:
                        pass
            if entries:
                break
    ordered = sorted(entries)
    return ordered, [entries[a] for a in ordered]

