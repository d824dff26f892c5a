"""The preload library's compact recording (``PRMRAW02``, csrc/preload/trace.h has the
byte layout): decoding it into a :class:`Trace` with dense object ids, plus what only a
recording has: the call stack of each operation that carries one, the stacks' frames,
the timeline samples, the command line and the process's maps at exit.

The decoding is C (``pymalloc_real/_rawdecode.c``): one pass decodes and converts
(addresses become object ids the way ``Trace.from_raw`` does it for the older 24-byte
records), two more find the live bytes at each sample and at the peak and each stack's
calls, bytes, peak and leaked bytes, at about 0.1 µs per operation in all.
"""


import os
import struct
from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import _rawdecode
from .model import MAGIC, RAW_MAGIC, Trace, TraceError


RAW2_MAGIC = b"PRMRAW02"


_HEADER = struct.Struct("<8sIIQQ")


# Header flags.
STACKS_RECORDED, STACKS_SAMPLED, STACKS_UNAVAILABLE = 1, 2, 4


# Timeline events (trace.h).
EVENTS = {0: None, 1: "brk", 2: "trim", 3: "mmap", 4: "munmap"}


@dataclass
class RawSample:
    """A timeline sample as recorded: after ``op_index`` operations of the trace, when
    ``live`` bytes (asked for, not yet freed) were live."""
    op_index: int
    t_ns: int
    live: int
    heap: int
    mmapped: int
    rss: int
    minflt: int
    majflt: int
    event: Optional[str]


@dataclass
class RawRecording:
    """One process's decoded recording. ``op_stacks[i]`` is the stack id of the trace's
    operation ``i`` (0: none: a free, or an allocation the sampler skipped); ``stacks``
    maps an id to its return addresses, innermost first. ``sample_mean`` is the
    sampler's mean interval in bytes (0 when every allocation has its stack).
    ``finished`` says the process reached its exit (else it was killed or exec'd)."""
    pid: int
    trace: Trace
    op_stacks: array
    stacks: Dict[int, Tuple[int, ...]]
    samples: List[RawSample]
    command: List[str]
    maps: Optional[str]
    flags: int
    sample_mean: int
    start_ns: int
    finished: bool = False
    file_bytes: int = 0         # the recording's size on disk
    # What the decoder's walks found: by stack id (calls, bytes, bytes live at the peak,
    # bytes live at the end; estimates when sample_mean), and the peak of live bytes
    # (after operation peak_index; -1 for an empty trace).
    site_totals: Dict[int, Tuple[float, float, float, float]] = field(default_factory=dict)
    peak_index: int = -1
    peak_live: int = 0

    @property
    def bytes_per_op(self):
        """Bytes on disk per operation of the trace."""
        return self.file_bytes / max(len(self.trace), 1)

    @property
    def stacks_recorded(self):
        return bool(self.flags & STACKS_RECORDED)


def decode(data, description="recorded"):
    """A :class:`RawRecording` from the bytes of a ``PRMRAW02`` file. A stream cut short
    (the process was killed) keeps every whole record before the cut."""
    data = bytes(data)
    if not data.startswith(RAW2_MAGIC) or len(data) < _HEADER.size:
        raise TraceError("not a PRMRAW02 recording")
    _, pid, flags, sample_mean, start_ns = _HEADER.unpack_from(data)
    mean = sample_mean if flags & STACKS_SAMPLED else 0
    try:
        out = _rawdecode.decode(data, _HEADER.size, float(mean))
    except ValueError as error:
        raise TraceError(f"corrupt recording: {error}") from None
    trace = Trace(out["records"], out["n_objects"], out["n_threads"],
                  f"{description} (pid {pid})")
    trace.unknown_frees = out["unknown_frees"]
    op_stacks = array("I")
    op_stacks.frombytes(out["op_stacks"])
    samples = [RawSample(index, t, live, heap, mapped, rss, minor, major, EVENTS.get(event, "?"))
               for index, t, live, heap, mapped, rss, minor, major, event in out["samples"]]
    texts = out["texts"]
    command = [part.decode("utf-8", "replace") for part in texts.get(1, b"").split(b"\0") if part]
    maps = texts[2].decode("utf-8", "replace") if 2 in texts else None
    return RawRecording(pid, trace, op_stacks, out["stacks"], samples, command, maps, flags,
                        mean, start_ns, out["finished"], len(data), out["sites"],
                        out["peak_index"], out["peak_live"])


def load(path):
    """A trace from a file in any form (binary, either raw form, text), told apart by
    the magic at its start."""
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(RAW2_MAGIC):
        return decode(data, os.path.basename(path)).trace
    if data.startswith(MAGIC) or data.startswith(RAW_MAGIC):
        trace = Trace.from_bytes(data)
        if not trace.description:
            trace.description = os.path.basename(path)
        return trace
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TraceError(f"{path}: neither a binary trace nor text") from None
    return Trace.from_text(text)
