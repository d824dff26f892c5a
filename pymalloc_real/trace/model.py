"""The trace itself (``Trace``): operations as packed records, with their checks, their
summary, and the three file formats (text, binary with varints, the preload library's
raw records), all described in the package's docstring (``pymalloc_real.trace``).
"""


import struct
from dataclasses import dataclass
from typing import Dict

from ..errors import PymallocError


MALLOC, FREE, REALLOC, CALLOC, MEMALIGN = 1, 2, 3, 4, 5


OP_NAMES = {MALLOC: "malloc", FREE: "free", REALLOC: "realloc", CALLOC: "calloc",
            MEMALIGN: "memalign"}


CREATING = (MALLOC, CALLOC, MEMALIGN)


_LETTERS = {MALLOC: "m", FREE: "f", REALLOC: "r", CALLOC: "c", MEMALIGN: "a"}


_OPS_BY_LETTER = {letter: op for op, letter in _LETTERS.items()}


RECORD = struct.Struct("<BBHIQQ")      # the packed form, C's struct lab_op


MAGIC = b"PRMTRACE"


RAW_MAGIC = b"PRMRAW01"


VERSION = 1


_RAW_HEADER = struct.Struct("<8sII")


_RAW_REALLOC_END = 6


_U64 = (1 << 64) - 1


class TraceError(PymallocError, ValueError):
    """A trace that cannot be read or built: a bad file, a bad line, an operation out of
    range. ``line`` is the line number for text."""

    def __init__(self, message, line=None):
        self.line = line
        super().__init__(message if line is None else f"line {line}: {message}")


@dataclass(frozen=True)
class Summary:
    """What a trace holds: operations by kind, objects, threads, the bytes asked for by
    creating operations and reallocs, and the peak of the live objects' sizes (and of
    their number)."""
    ops: int
    objects: int
    threads: int
    by_op: Dict[str, int]
    bytes_requested: int
    peak_live_bytes: int
    peak_live_objects: int
    live_at_end: int

    def line(self):
        """One line for people."""
        return (f"{self.ops:,} ops ({', '.join(f'{n:,} {k}' for k, n in self.by_op.items() if n)}), "
                f"{self.objects:,} objects, {self.threads} thread(s), "
                f"{self.bytes_requested:,} bytes requested, peak live {self.peak_live_bytes:,} "
                f"bytes in {self.peak_live_objects:,} objects")


class Trace:
    """A sequence of allocation operations with dense object ids; see the module's
    docstring. Build one with :meth:`from_ops`, :meth:`from_text`, :meth:`from_raw`,
    :func:`load` or a generator; ``description`` says where it came from."""

    __slots__ = ("_records", "n_objects", "n_threads", "description", "unknown_frees")

    def __init__(self, records=b"", n_objects=0, n_threads=0, description=""):
        self._records = bytes(records)
        if len(self._records) % RECORD.size:
            raise TraceError(f"packed records are {RECORD.size} bytes each: got "
                             f"{len(self._records)} bytes")
        self.n_objects = n_objects
        self.n_threads = n_threads
        self.description = description
        self.unknown_frees = 0      # raw traces: frees of addresses never allocated

    # ---- building ----

    @classmethod
    def from_ops(cls, ops, description=""):
        """A trace of ``ops``, an iterable of ``(op, id, size, align_log2, thread)``
        (shorter tuples are padded with zeros: ``(FREE, 3)`` is a free of object 3).
        n_objects and n_threads are one more than the largest id and thread."""
        out = bytearray()
        pack = RECORD.pack
        top_id = top_thread = -1
        for number, entry in enumerate(ops):
            op, oid, size, align, thread = (tuple(entry) + (0, 0, 0, 0))[:5]
            if op not in OP_NAMES:
                raise TraceError(f"operation {number}: unknown op {op!r} (1 to 5)")
            if not (0 <= oid <= _U64 and 0 <= size <= _U64 and 0 <= align < 64
                    and 0 <= thread <= 0xffff):
                raise TraceError(f"operation {number}: {entry!r} out of range")
            out += pack(op, align, thread, 0, oid, size)
            top_id = max(top_id, oid)
            top_thread = max(top_thread, thread)
        return cls(out, top_id + 1, top_thread + 1, description)

    @classmethod
    def from_packed(cls, data, description=""):
        """A trace from :meth:`packed` records."""
        trace = cls(data, 0, 0, description)
        for _, _, thread, _, oid, _ in RECORD.iter_unpack(trace._records):
            trace.n_objects = max(trace.n_objects, oid + 1)
            trace.n_threads = max(trace.n_threads, thread + 1)
        return trace

    # ---- the contract with the lab ----

    def __len__(self):
        return len(self._records) // RECORD.size

    def __iter__(self):
        for op, align, thread, _, oid, size in RECORD.iter_unpack(self._records):
            yield op, oid, size, align, thread

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Trace.from_ops(list(self)[index], self.description)
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("trace index out of range")
        op, align, thread, _, oid, size = RECORD.unpack_from(self._records, index * RECORD.size)
        return op, oid, size, align, thread

    def packed(self):
        """The operations as little-endian 24-byte records (C's struct lab_op)."""
        return self._records

    def __eq__(self, other):
        return (isinstance(other, Trace) and self._records == other._records
                and self.n_objects == other.n_objects and self.n_threads == other.n_threads)

    def __hash__(self):
        return hash(self._records)

    def __repr__(self):
        what = f" {self.description!r}" if self.description else ""
        return (f"<Trace{what}: {len(self):,} ops, {self.n_objects:,} objects, "
                f"{self.n_threads} thread(s)>")

    # ---- checking and summing up ----

    def problems(self, limit=10):
        """Up to ``limit`` messages naming what is wrong with the trace as a program's
        history: an id created twice or out of range, a free or realloc of an object
        that is not live. Empty for a well-formed trace."""
        found = []
        state = bytearray(self.n_objects)      # 0 not yet, 1 live, 2 freed
        for number, (op, oid, _, _, thread) in enumerate(self):
            if thread >= max(self.n_threads, 1):
                found.append(f"op {number}: thread {thread} >= n_threads {self.n_threads}")
            elif oid >= self.n_objects:
                found.append(f"op {number}: id {oid} >= n_objects {self.n_objects}")
            elif op in CREATING:
                if state[oid]:
                    found.append(f"op {number}: {OP_NAMES[op]} creates object {oid} again")
                state[oid] = 1
            elif state[oid] != 1:
                found.append(f"op {number}: {OP_NAMES[op]} of object {oid}, which is "
                             + ("not yet created" if state[oid] == 0 else "already freed"))
            elif op == FREE:
                state[oid] = 2
            if len(found) >= limit:
                break
        return found

    def check(self):
        """Raise TraceError naming the first problems, if any; return self."""
        found = self.problems()
        if found:
            raise TraceError("not a well-formed trace: " + "; ".join(found))
        return self

    def summary(self):
        """A :class:`Summary` of the trace."""
        sizes = {}
        live = peak = live_objects = peak_objects = requested = 0
        by_op = dict.fromkeys(OP_NAMES.values(), 0)
        names = OP_NAMES
        for op, oid, size, _, _ in self:
            by_op[names[op]] += 1
            if op == FREE:
                live -= sizes.pop(oid, 0)
                live_objects -= 1
                continue
            requested += size
            if op == REALLOC:
                live += size - sizes.get(oid, 0)
            else:
                live += size
                live_objects += 1
            sizes[oid] = size
            if live > peak:
                peak = live
            if live_objects > peak_objects:
                peak_objects = live_objects
        return Summary(len(self), self.n_objects, self.n_threads, by_op, requested, peak,
                       peak_objects, len(sizes))

    # ---- text ----

    def to_text(self):
        """The text form (see the module's docstring)."""
        lines = [f"# pymalloc_real trace {VERSION}: {len(self)} ops, {self.n_objects} objects, "
                 f"{self.n_threads} threads" + (f"; {self.description}" if self.description
                                                else "")]
        letters = _LETTERS
        for op, oid, size, align, thread in self:
            if op == FREE:
                text = f"f {oid}"
            elif op == MEMALIGN:
                text = f"a {oid} {size} {1 << align}"
            else:
                text = f"{letters[op]} {oid} {size}"
            lines.append(text if thread == 0 else f"{text} t{thread}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text, description=None):
        """A trace from its text form; TraceError names the bad line."""
        ops = []
        header = None
        for number, raw in enumerate(text.splitlines(), 1):
            line, _, comment = raw.partition("#")
            if header is None and not line.strip() and comment:
                header = comment.strip()
            fields = line.split()
            if not fields:
                continue
            thread = 0
            if len(fields) > 1 and fields[-1][:1] == "t":
                try:
                    thread = int(fields.pop()[1:])
                except ValueError:
                    raise TraceError(f"bad thread in {raw.strip()!r}", number) from None
            op = _OPS_BY_LETTER.get(fields[0])
            want = {FREE: 2, MEMALIGN: 4}.get(op, 3)
            if op is None or len(fields) != want:
                raise TraceError(f"expected 'm|r|c ID SIZE', 'f ID' or 'a ID SIZE ALIGN' "
                                 f"[tTHREAD], got {raw.strip()!r}", number)
            try:
                numbers = [int(f, 10) for f in fields[1:]]
            except ValueError:
                raise TraceError(f"not a number in {raw.strip()!r}", number) from None
            if any(n < 0 for n in numbers) or thread < 0:
                raise TraceError(f"negative number in {raw.strip()!r}", number)
            align = 0
            if op == MEMALIGN:
                alignment = numbers[2]
                if alignment < 1 or alignment & (alignment - 1):
                    raise TraceError(f"alignment {alignment} is not a power of two", number)
                align = alignment.bit_length() - 1
            ops.append((op, numbers[0], numbers[1] if op != FREE else 0, align, thread))
        if description is None:
            description = header.partition(";")[2].strip() if header and ";" in header else ""
        try:
            return cls.from_ops(ops, description)
        except TraceError as error:
            raise TraceError(str(error)) from None

    # ---- binary ----

    def to_bytes(self):
        """The compact binary form (see the module's docstring)."""
        out = bytearray(MAGIC)
        out.append(VERSION)
        description = self.description.encode("utf-8")
        for n in (len(self), self.n_objects, self.n_threads, len(description)):
            _put_varint(out, n)
        out += description
        put = _put_varint
        created = 0
        thread_now = 0
        for op, align, thread, _, oid, size in RECORD.iter_unpack(self._records):
            tag = op
            changed = thread != thread_now
            if changed:
                tag |= 8
                thread_now = thread
            extra = None
            if op == MALLOC or op == CALLOC or op == MEMALIGN:
                if oid != created:
                    tag |= 0xf0
                    extra = _zigzag(oid - created)
                created += 1
            else:
                d = created - 1 - oid
                if 0 <= d < 15:
                    tag |= d << 4
                else:
                    tag |= 0xf0
                    extra = _zigzag(d)
            out.append(tag)
            if changed:
                put(out, thread)
            if extra is not None:
                put(out, extra)
            if op != FREE:
                if size < 0x80:
                    out.append(size)
                else:
                    put(out, size)
            if op == MEMALIGN:
                out.append(align)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data):
        """A trace from the compact binary form (or the raw form, see :func:`load`)."""
        data = bytes(data)
        if data.startswith(RAW_MAGIC):
            return cls.from_raw(data)
        if data.startswith(b"PRMRAW"):
            raise TraceError("a recording in the library's compact raw form: read it with "
                             "pymalloc_real.trace.load (or trace.rawstream.decode)")
        if not data.startswith(MAGIC):
            raise TraceError("not a binary trace: no PRMTRACE magic")
        if len(data) <= len(MAGIC) or data[len(MAGIC)] != VERSION:
            raise TraceError(f"unsupported binary trace version (this reads {VERSION})")
        pos = len(MAGIC) + 1
        try:
            n_ops, pos = _get_varint(data, pos)
            n_objects, pos = _get_varint(data, pos)
            n_threads, pos = _get_varint(data, pos)
            length, pos = _get_varint(data, pos)
            description = data[pos:pos + length].decode("utf-8")
            pos += length
            out = bytearray()
            pack = RECORD.pack
            created = thread = 0
            for _ in range(n_ops):
                tag = data[pos]
                pos += 1
                op = tag & 7
                if not 1 <= op <= 5:
                    raise TraceError(f"bad operation {op} at byte {pos - 1}")
                if tag & 8:
                    thread, pos = _get_varint(data, pos)
                code = tag >> 4
                if code == 15:
                    value, pos = _get_varint(data, pos)
                    value = _unzigzag(value)
                else:
                    value = 0 if op in CREATING else code
                if op in CREATING:
                    oid = created + value
                    created += 1
                else:
                    oid = created - 1 - value
                size = align = 0
                if op != FREE:
                    size, pos = _get_varint(data, pos)
                if op == MEMALIGN:
                    align = data[pos]
                    pos += 1
                out += pack(op, align, thread, 0, oid, size)
        except IndexError:
            raise TraceError("binary trace truncated") from None
        except (struct.error, UnicodeDecodeError) as error:
            raise TraceError(f"corrupt binary trace: {error}") from None
        if pos != len(data):
            raise TraceError(f"{len(data) - pos} bytes of garbage after the last operation")
        return cls(out, n_objects, n_threads, description)

    def save(self, path, text=False):
        """Write the trace to ``path``: the compact binary form, or text."""
        if text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(self.to_text())
        else:
            with open(path, "wb") as f:
                f.write(self.to_bytes())

    # ---- raw traces from the preload library ----

    @classmethod
    def from_raw(cls, data, description="recorded"):
        """A trace from the preload library's raw records (see the module's docstring):
        addresses become dense object ids, failed calls (a NULL result) are dropped,
        realloc's two records become one operation, threads are renumbered densely in
        order of appearance. Frees of addresses never allocated are dropped and counted
        in ``unknown_frees``; an allocation returning a live address is an error."""
        data = bytes(data)
        if not data.startswith(RAW_MAGIC) or len(data) < _RAW_HEADER.size:
            raise TraceError("not a raw trace: no PRMRAW01 magic")
        _, record_size, pid = _RAW_HEADER.unpack_from(data)
        if record_size != RECORD.size:
            raise TraceError(f"raw records of {record_size} bytes; this reads {RECORD.size}")
        body = memoryview(data)[_RAW_HEADER.size:]
        body = body[:len(body) - len(body) % RECORD.size]
        out = bytearray()
        pack = RECORD.pack
        live = {}
        pending = {}
        threads = {}
        next_id = unknown = 0
        for number, (op, align, raw_thread, _, address, size) in enumerate(RECORD.iter_unpack(body)):
            thread = threads.get(raw_thread)
            if thread is None:
                thread = threads[raw_thread] = len(threads)
            if op == FREE:
                oid = live.pop(address, None)
                if oid is None:
                    unknown += 1
                    continue
                out += pack(FREE, 0, thread, 0, oid, 0)
            elif op in CREATING:
                if address == 0:
                    continue
                if address in live:
                    raise TraceError(f"raw record {number}: {OP_NAMES[op]} returned "
                                     f"{address:#x}, which is still live")
                live[address] = next_id
                out += pack(op, align, thread, 0, next_id, size)
                next_id += 1
            elif op == REALLOC:
                oid = live.pop(address, None) if address else None
                if address and oid is None:
                    unknown += 1
                pending[raw_thread] = (oid, address)
            elif op == _RAW_REALLOC_END:
                oid, old = pending.pop(raw_thread, (None, 0))
                if address and address in live:
                    raise TraceError(f"raw record {number}: realloc returned {address:#x}, "
                                     "which is still live")
                if oid is None:                 # realloc(NULL, n), or of an unknown block
                    if address:
                        live[address] = next_id
                        out += pack(MALLOC, 0, thread, 0, next_id, size)
                        next_id += 1
                elif address:
                    live[address] = oid
                    out += pack(REALLOC, 0, thread, 0, oid, size)
                elif size == 0:                 # realloc(p, 0) freed p
                    out += pack(FREE, 0, thread, 0, oid, 0)
                else:                           # failed: p is still there
                    live[old] = oid
            else:
                raise TraceError(f"raw record {number}: unknown op {op}")
        used = {t for _, _, t, _, _, _ in RECORD.iter_unpack(out)}
        if len(used) != len(threads):   # a thread whose only records were dropped
            renumber = {t: n for n, t in enumerate(sorted(used))}
            out = bytearray(b"".join(pack(op, a, renumber[t], 0, i, s)
                                     for op, a, t, _, i, s in RECORD.iter_unpack(out)))
        trace = cls(out, next_id, len(used), f"{description} (pid {pid})")
        trace.unknown_frees = unknown
        return trace


# ---- varints ------------------------------------------------------------------------------

def _put_varint(out, n):
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)


def _get_varint(data, pos):
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


def _zigzag(n):
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n):
    return n >> 1 if not n & 1 else -((n + 1) >> 1)
