"""The preload library's compact recording (``PRMRAW02``, csrc/preload/trace.h has the
byte layout): decoding it into a :class:`Trace` with dense object ids, plus what only a
recording has: the call stack of each operation that carries one, the stacks' frames,
the timeline samples, the command line and the process's maps at exit.

One loop decodes and converts at once (addresses become object ids the way
``Trace.from_raw`` does it for the older 24-byte records), so loading costs one pass.
"""


import os
import struct
from array import array
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .model import (CALLOC, FREE, MAGIC, MALLOC, MEMALIGN, OP_NAMES, RAW_MAGIC, REALLOC,
                    RECORD, Trace, TraceError)


RAW2_MAGIC = b"PRMRAW02"


_HEADER = struct.Struct("<8sIIQQ")


# Header flags.
STACKS_RECORDED, STACKS_SAMPLED, STACKS_UNAVAILABLE = 1, 2, 4


# Extension records and timeline events (trace.h).
_EXT_STACK, _EXT_THREAD, _EXT_SAMPLE, _EXT_TEXT, _EXT_END = 1, 2, 3, 4, 5


EVENTS = {0: None, 1: "brk", 2: "trim", 3: "mmap", 4: "munmap"}


_REALLOC_BEGIN, _REALLOC_END = 3, 6


@dataclass
class RawSample:
    """A timeline sample as recorded: after ``op_index`` operations of the trace."""
    op_index: int
    t_ns: int
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
    out = bytearray()
    pack = RECORD.pack
    op_stacks = array("I")
    put_stack = op_stacks.append
    stacks = {}
    samples = []
    texts = {}
    live = {}           # address -> object id
    pending = {}        # thread -> (object id or None, old address) of a realloc begun
    ring = [0] * 16
    head = 0
    last = 0
    thread = 0
    used_threads = set()
    next_id = unknown = 0
    finished = False
    pos = _HEADER.size
    end = len(data)
    record_start = pos
    try:
        while pos < end:
            record_start = pos
            tag = data[pos]
            pos += 1
            kind = tag & 7
            if kind == 0:
                sub = tag >> 3
                if sub == _EXT_STACK:
                    sid, pos = _varint(data, pos)
                    depth, pos = _varint(data, pos)
                    frames = []
                    frame = 0
                    for _ in range(depth):
                        value, pos = _varint(data, pos)
                        frame = (frame + _unzigzag(value)) & 0xffffffffffffffff
                        frames.append(frame)
                    stacks[sid] = tuple(frames)
                elif sub == _EXT_THREAD:
                    thread, pos = _varint(data, pos)
                elif sub == _EXT_SAMPLE:
                    values = []
                    for _ in range(6):
                        value, pos = _varint(data, pos)
                        values.append(value)
                    event = data[pos]
                    pos += 1
                    samples.append(RawSample(len(op_stacks), *values, EVENTS.get(event, "?")))
                elif sub == _EXT_TEXT:
                    which = data[pos]
                    length, pos = _varint(data, pos + 1)
                    if pos + length > end:
                        raise IndexError
                    texts[which] = data[pos:pos + length]
                    pos += length
                elif sub == _EXT_END:
                    finished = True
                else:
                    raise TraceError(f"unknown extension record {sub} at byte {record_start}")
                continue
            # An operation: its address first.
            code = tag >> 4
            if code == 0:
                value = data[pos]
                pos += 1
                if value >= 0x80:
                    value, pos = _varint(data, pos - 1)
                address = ((last >> 4) + (value >> 1 if not value & 1 else -((value + 1) >> 1))) << 4
            elif code < 14:
                address = ring[(head - code + 1) & 15]
            elif code == 14:
                address = int.from_bytes(data[pos:pos + 8], "little")
                if pos + 8 > end:
                    raise IndexError
                pos += 8
            else:
                address = 0
            if address:
                last = address
                head = (head + 1) & 15
                ring[head] = address
            stack = 0
            if tag & 8:
                stack = data[pos]
                pos += 1
                if stack >= 0x80:
                    stack, pos = _varint(data, pos - 1)
            size = align = 0
            if kind != FREE and kind != _REALLOC_END:
                size = data[pos]
                pos += 1
                if size >= 0x80:
                    size, pos = _varint(data, pos - 1)
                if kind == MEMALIGN:
                    align = data[pos]
                    pos += 1
            # ... then what it does to the objects (Trace.from_raw's rules).
            if kind == FREE:
                oid = live.pop(address, None)
                if oid is None:
                    unknown += 1
                    continue
                out += pack(FREE, 0, thread, 0, oid, 0)
                put_stack(0)
                used_threads.add(thread)
            elif kind == MALLOC or kind == CALLOC or kind == MEMALIGN:
                if not address:
                    continue
                if address in live:
                    raise TraceError(f"byte {record_start}: {OP_NAMES[kind]} returned "
                                     f"{address:#x}, which is still live")
                live[address] = next_id
                out += pack(kind, align, thread, 0, next_id, size)
                put_stack(stack)
                used_threads.add(thread)
                next_id += 1
            elif kind == _REALLOC_BEGIN:
                oid = live.pop(address, None) if address else None
                if address and oid is None:
                    unknown += 1
                pending[thread] = (oid, address, size)
            elif kind == _REALLOC_END:
                oid, old, size = pending.pop(thread, (None, 0, 0))
                if address and address in live:
                    raise TraceError(f"byte {record_start}: realloc returned {address:#x}, "
                                     "which is still live")
                if oid is None:                 # realloc(NULL, n), or of an unknown block
                    if address:
                        live[address] = next_id
                        out += pack(MALLOC, 0, thread, 0, next_id, size)
                        put_stack(stack)
                        next_id += 1
                elif address:
                    live[address] = oid
                    out += pack(REALLOC, 0, thread, 0, oid, size)
                    put_stack(stack)
                elif size == 0:                 # realloc(p, 0) freed p
                    out += pack(FREE, 0, thread, 0, oid, 0)
                    put_stack(0)
                else:                           # failed: p is still there
                    live[old] = oid
                    continue
                used_threads.add(thread)
            else:
                raise TraceError(f"byte {record_start}: unknown operation {kind}")
    except IndexError:
        finished = False        # cut short: keep what was whole (the last op may be lost)
    n_threads = len(used_threads)
    if used_threads and max(used_threads) + 1 != n_threads:     # threads with no kept op
        renumber = {t: n for n, t in enumerate(sorted(used_threads))}
        out = bytearray(b"".join(pack(op, a, renumber[t], 0, i, s)
                                 for op, a, t, _, i, s in RECORD.iter_unpack(out)))
    trace = Trace(out, next_id, n_threads, f"{description} (pid {pid})")
    trace.unknown_frees = unknown
    command = [part.decode("utf-8", "replace") for part in texts.get(1, b"").split(b"\0") if part]
    maps = texts[2].decode("utf-8", "replace") if 2 in texts else None
    return RawRecording(pid, trace, op_stacks, stacks, samples, command, maps, flags,
                        sample_mean if flags & STACKS_SAMPLED else 0, start_ns, finished, len(data))


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


def _varint(data, pos):
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7f) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 70:
            raise TraceError("varint too long")


def _unzigzag(n):
    return n >> 1 if not n & 1 else -((n + 1) >> 1)
