"""The lab's vocabulary and its traces: the policies by name, the operations, the checks
the replay loop makes, ``LabError``, and traces packed into the 24-byte records the C
replay loop reads (``pack``, from a Trace, a list of tuples or text; ``load``, a file).
"""


import dataclasses
import struct

from .._core import lib
from ..errors import PymallocError


# Every policy, by the name used in the API and on the command line, in table order: the
# textbook ones from the simplest, then the real allocators.
POLICIES = ("minimal", "first_fit", "next_fit", "best_fit", "worst_fit", "buddy",
            "buddy_pool", "bitmap", "slab", "ptmalloc", "glibc")


_KINDS = {"minimal": lib.LAB_MINIMAL, "first_fit": lib.LAB_FIRST_FIT,
          "next_fit": lib.LAB_NEXT_FIT, "best_fit": lib.LAB_BEST_FIT,
          "worst_fit": lib.LAB_WORST_FIT, "buddy": lib.LAB_BUDDY,
          "buddy_pool": lib.LAB_BUDDY_POOL, "bitmap": lib.LAB_BITMAP, "slab": lib.LAB_SLAB,
          "ptmalloc": lib.LAB_PTMALLOC, "glibc": lib.LAB_GLIBC, "null": lib.LAB_NULL}


# The policies that own a region (and so have a walk and a free-space measure).
REGION_POLICIES = POLICIES[:9]


MALLOC, FREE, REALLOC, CALLOC, MEMALIGN = 1, 2, 3, 4, 5


_OP_LETTERS = {"m": MALLOC, "f": FREE, "r": REALLOC, "c": CALLOC, "a": MEMALIGN}


_RECORD = struct.Struct("<BBHIQQ")


DEFAULT_REGION = 256 << 20


_SAMPLES = 400                  # points of the time series by default


_CHECKS = {lib.LAB_CHECK_HEAD: "the pattern at the block's start changed",
           lib.LAB_CHECK_TAIL: "the pattern at the block's end changed",
           lib.LAB_CHECK_ZERO: "calloc's block was not zero",
           lib.LAB_CHECK_ALIGN: "a block was not aligned as promised",
           lib.LAB_CHECK_USABLE: "the usable size was smaller than the request",
           lib.LAB_CHECK_OP: "an unknown op code (or an alignment above 2**40)",
           lib.LAB_CHECK_ID: "an id out of range, or malloc of an id still live"}


class LabError(PymallocError, ValueError):
    """A policy, a parameter or a trace the lab cannot take, or a replay whose checks
    failed."""


# ---- traces ----------------------------------------------------------------------------------

@dataclasses.dataclass
class _Packed:
    data: bytes
    n_ops: int
    n_objects: int


def pack(trace):
    """The trace as the replay loop reads it: an object with ``packed()`` and
    ``n_objects``, or a list of ``(op, id, size[, align_log2])`` tuples."""
    if isinstance(trace, _Packed):
        return trace
    if hasattr(trace, "packed"):
        data = bytes(trace.packed())
        if len(data) % _RECORD.size:
            raise LabError(f"a packed trace is a multiple of {_RECORD.size} bytes, "
                           f"not {len(data)}")
        n_objects = getattr(trace, "n_objects", None)
        if not isinstance(n_objects, int) or n_objects < 0:
            raise LabError("a packed trace needs n_objects (its ids are 0..n_objects-1)")
        return _Packed(data, len(data) // _RECORD.size, n_objects)
    if isinstance(trace, (str, bytes)):
        raise LabError("a trace is a list of (op, id, size) tuples or a Trace; "
                       "use lab.load(path) for a file")
    parts, n_objects = [], 0
    for number, item in enumerate(trace):
        try:
            op, oid, size, *rest = item
            align = rest[0] if rest else 0
            if op not in (MALLOC, FREE, REALLOC, CALLOC, MEMALIGN) or len(rest) > 1:
                raise ValueError(f"op {op!r}")
            if op == MEMALIGN and not 0 <= align <= 40:
                raise ValueError(f"align_log2 {align!r}")
            parts.append(_RECORD.pack(op, align, 0, 0, oid, size))
        except (ValueError, TypeError, struct.error) as error:
            raise LabError(f"op {number}: {item!r} is not (op 1-5, id, size"
                           f"[, align_log2]): {error}") from None
        n_objects = max(n_objects, oid + 1)
    return _Packed(b"".join(parts), len(parts), n_objects)


def parse_text(text):
    """Ops from the text form, one per line: ``m ID SIZE``, ``f ID``, ``r ID SIZE``,
    ``c ID SIZE``, ``a ID SIZE ALIGN`` (ALIGN in bytes, a power of two); ``#`` starts a
    comment. Returns a list of tuples for :func:`pack`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    ops = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        op = _OP_LETTERS.get(words[0])
        want = {MALLOC: 3, FREE: 2, REALLOC: 3, CALLOC: 3, MEMALIGN: 4}.get(op)
        try:
            if want is None or len(words) != want:
                raise ValueError
            values = [int(w, 0) for w in words[1:]]
            if min(values) < 0:
                raise ValueError
        except ValueError:
            raise LabError(f"line {number}: {line.strip()!r} is not one of m ID SIZE, f ID, "
                           "r ID SIZE, c ID SIZE, a ID SIZE ALIGN") from None
        if op == FREE:
            ops.append((op, values[0], 0))
        elif op == MEMALIGN:
            align = values[2]
            if align < 1 or align & (align - 1):
                raise LabError(f"line {number}: the alignment {align} is not a power of two")
            ops.append((op, values[0], values[1], align.bit_length() - 1))
        else:
            ops.append((op, values[0], values[1]))
    return ops


def load(path):
    """A trace file in any of the trace wing's formats (text, binary, raw)."""
    from ..trace import rawstream     # here, not at the top: the lab loads without it
    return rawstream.load(path)
