"""The placement-policy lab: the classical placement policies of seed 001 on real mmapped
memory, beside our ptmalloc core and glibc's malloc, replayed over recorded traces.

The policies and the replay loop are C (``csrc/lab/``, through the cffi module), so a
replay measures the policy, not Python: the loop itself costs about 25 ns per operation
(see :attr:`ReplayResult.loop_ns_per_op`). This module packs traces, runs one policy
(:func:`replay`) or several (:func:`compare`, a table that prints and a chart of the
footprint over time), draws a policy's region at a chosen moment (:func:`picture`), and
gives direct access to one policy (:class:`Policy`) for experiments and tests.

    >>> from pymalloc_real import lab
    >>> trace = [(1, 0, 100), (1, 1, 200), (2, 0, 0), (1, 2, 50)]   # (op, id, size)
    >>> lab.replay(trace, "first_fit").failed
    0

A trace is anything with ``.packed()`` (24-byte records, see ``struct lab_op`` in
``csrc/lab/lab.h``) and ``.n_objects`` (pymalloc_real.trace's traces), or a list of
``(op, id, size)`` / ``(op, id, size, align_log2)`` tuples with op 1 malloc, 2 free,
3 realloc, 4 calloc, 5 memalign, or a text file (:func:`load`).
"""
import dataclasses
import os
import struct

from ._core import ffi, lib
from .errors import PymallocError

__all__ = ["POLICIES", "REGION_POLICIES", "LabError", "Policy", "Block", "CacheInfo",
           "Sample", "ReplayResult", "Comparison", "replay", "compare", "picture", "load",
           "parse_text", "pack"]

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
    """A trace file: through pymalloc_real.trace when it is there (the recorder's
    formats), else the text form of :func:`parse_text`."""
    try:
        from . import trace as _trace     # the recorder's module, when installed
    except ImportError:
        _trace = None
    if _trace is not None and hasattr(_trace, "load"):
        return _trace.load(path)
    with open(path, "rb") as f:
        return parse_text(f.read())


# ---- one policy --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Block:
    """One entry of a policy's walk, in address order. ``kind`` is ``used``, ``free``,
    ``meta`` (the policy's own bookkeeping) or ``untouched`` (beyond the high-water
    mark). For a used block ``address``/``size`` are what malloc returned and its usable
    size; ``span_start``/``span_size`` cover it with its header."""
    address: int
    size: int
    span_start: int
    span_size: int
    kind: str


_BLOCK_KINDS = {lib.LAB_BLOCK_FREE: "free", lib.LAB_BLOCK_USED: "used",
                lib.LAB_BLOCK_META: "meta", lib.LAB_BLOCK_UNTOUCHED: "untouched"}


@dataclasses.dataclass(frozen=True)
class CacheInfo:
    """A slab cache: its slabs on each list and its objects in use."""
    name: str
    object_size: int
    slab_size: int
    objects_per_slab: int
    slabs_full: int
    slabs_partial: int
    slabs_empty: int
    objects_in_use: int


def _config(policy, region_size, min_block, pool_size, block_size, slab_size):
    if policy not in _KINDS:
        raise LabError(f"unknown policy {policy!r}; the policies are {', '.join(POLICIES)}")
    def power_of_two(name, value, least):
        if value is not None and (not isinstance(value, int) or value < least
                                  or value & (value - 1)):
            raise LabError(f"{name} must be a power of two of at least {least}, "
                           f"not {value!r}")
    if region_size is not None and (not isinstance(region_size, int)
                                    or not 4096 <= region_size <= 1 << 46):
        raise LabError(f"region_size must be 4096 bytes to 64 TiB, not {region_size!r}")
    power_of_two("min_block", min_block, 16)
    power_of_two("pool_size", pool_size, 16)
    power_of_two("slab_size", slab_size, 4096)
    if block_size is not None and (not isinstance(block_size, int) or block_size < 16
                                   or block_size % 16):
        raise LabError(f"block_size must be a multiple of 16, not {block_size!r}")
    region = region_size or DEFAULT_REGION
    if min_block and min_block * 2 > region or pool_size and pool_size > region:
        raise LabError("the region is too small for min_block / pool_size")
    if pool_size and pool_size < (min_block or 16):
        raise LabError("pool_size must be at least min_block")
    if block_size and block_size > region:
        raise LabError("block_size is larger than the region")
    config = ffi.new("struct lab_config *")
    config.kind = _KINDS[policy]
    config.region_size = region_size or 0
    config.min_block = min_block or 0
    config.pool_size = pool_size or 0
    config.block_size = block_size or 0
    config.slab_size = slab_size or 0
    return config


class Policy:
    """One policy on a fresh region, driven directly: ``malloc``, ``free``, ``realloc``,
    ``calloc``, ``memalign`` and ``usable_size`` take and return addresses (ints, 0 for
    NULL), :meth:`walk` lists the region's blocks, :meth:`stats` its footprint and free
    space, and the slab policy has kmem caches (:meth:`cache_create` & co.).

    Parameters (None: the default): ``region_size`` (256 MiB of address space; only what
    is used is ever backed), ``min_block`` (buddy: 16), ``pool_size`` (buddy_pool: 64 KiB),
    ``block_size`` (bitmap: 256; larger requests fail), ``slab_size`` (slab: 4096).

    Addresses handed to ``free``/``realloc`` must be live blocks of this policy: the C
    side trusts them, as malloc does.
    """

    def __init__(self, policy, region_size=None, min_block=None, pool_size=None,
                 block_size=None, slab_size=None):
        config = _config(policy, region_size, min_block, pool_size, block_size, slab_size)
        out = ffi.new("struct lab_policy **")
        status = lib.lab_policy_new(config, out)
        if status == lib.LAB_ERR_NOMEM:
            raise MemoryError(f"could not map the region of {policy}")
        if status != lib.LAB_OK:
            raise LabError(f"{policy}: a parameter out of range (status {status})")
        self.name = policy
        self._c = ffi.gc(out[0], lib.lab_policy_delete)
        self._ctors = []            # keeps cffi callbacks alive as long as the policy

    def close(self):
        """Unmap the region now (the policy is unusable afterwards)."""
        if self._c is not None:
            ffi.release(self._c)
            self._c = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _addr(self, pointer):
        return int(ffi.cast("uintptr_t", pointer))

    def malloc(self, size):
        return self._addr(lib.lab_malloc(self._c, size))

    def calloc(self, size):
        return self._addr(lib.lab_calloc(self._c, size))

    def memalign(self, alignment, size):
        return self._addr(lib.lab_memalign(self._c, alignment, size))

    def free(self, address):
        lib.lab_free(self._c, ffi.cast("void *", address))

    def realloc(self, address, size):
        return self._addr(lib.lab_realloc(self._c, ffi.cast("void *", address), size))

    def usable_size(self, address):
        return lib.lab_usable_size(self._c, ffi.cast("void *", address))

    def walk(self):
        """Every block of the region in address order (:class:`Block`); LabError for
        ptmalloc and glibc, whose blocks are not in a region of the lab's."""
        n = lib.lab_walk(self._c, ffi.NULL, 0)
        if n < 0:
            raise LabError(f"{self.name} has no walk: its blocks are not in a lab region "
                           "(pymalloc_real.introspect walks the core's heap)")
        while True:
            out = ffi.new("struct lab_block[]", max(n, 1))
            m = lib.lab_walk(self._c, out, n)
            if m <= n:
                return [Block(b.address, b.size, b.span_start, b.span_size,
                              _BLOCK_KINDS[b.kind]) for b in out[0:m]]
            n = m

    def stats(self):
        """A dict: footprint, region_base, region_size, free_total, free_largest (None
        when unknown), splits, merges, pool_releases, slabs."""
        s = ffi.new("struct lab_stats *")
        lib.lab_stats(self._c, s)
        out = {name: getattr(s, name) for name in ("footprint", "region_base", "region_size",
                                                    "free_total", "free_largest", "splits",
                                                    "merges", "pool_releases", "slabs")}
        for key in ("free_total", "free_largest"):
            if out[key] == 2 ** 64 - 1:
                out[key] = None
        return out

    # ---- slab caches ----

    def cache_create(self, name, size, align=0, ctor=None):
        """kmem_cache_create: a cache of ``size``-byte objects; ``ctor(address)`` runs on
        every object of each new slab. Returns the cache's index."""
        if self.name != "slab":
            raise LabError("kmem caches belong to the slab policy")
        callback = ffi.NULL
        if ctor is not None:
            callback = ffi.callback("void(void *)", lambda p: ctor(self._addr(p)))
            self._ctors.append(callback)
        index = lib.lab_kmem_cache_create(self._c, name.encode()[:31], size, align, callback)
        if index < 0:
            raise LabError(f"kmem_cache_create({name!r}, {size}, {align}): an object size "
                           "of 1 to 32768 bytes, a power-of-two alignment up to a page, "
                           f"at most {lib.LAB_SLAB_MAX_CACHES} caches")
        return index

    def cache_alloc(self, cache):
        return self._addr(lib.lab_kmem_cache_alloc(self._c, cache))

    def cache_free(self, cache, address):
        lib.lab_kmem_cache_free(self._c, cache, ffi.cast("void *", address))

    def cache_info(self, cache):
        info = ffi.new("struct lab_cache_info *")
        if lib.lab_kmem_cache_info(self._c, cache, info) != lib.LAB_OK:
            raise LabError(f"no cache {cache}")
        return CacheInfo(ffi.string(info.name).decode(), info.object_size, info.slab_size,
                         info.objects_per_slab, info.slabs_full, info.slabs_partial,
                         info.slabs_empty, info.objects_in_use)

    def caches(self):
        out, i = [], 0
        while True:
            try:
                out.append(self.cache_info(i))
            except LabError:
                return out
            i += 1

    # ---- replay ----

    def replay(self, trace, verify=True, sample_every=None, stop_after=None,
               free_remaining=True, time_limit=None):
        """Run the trace on this policy (see :func:`replay`); with ``free_remaining``
        false the objects still live stay, so :meth:`walk` shows the region then.
        ``time_limit`` (seconds) stops the loop once it has run that long (the result's
        ``timed_out`` and ``ops`` say where)."""
        packed = pack(trace)
        if stop_after is not None and (not isinstance(stop_after, int) or stop_after < 0):
            raise LabError(f"stop_after must be an op count, not {stop_after!r}")
        n = min(packed.n_ops, stop_after) if stop_after else packed.n_ops
        if sample_every is None:
            sample_every = max(1, n // _SAMPLES)
        if not isinstance(sample_every, int) or sample_every < 1:
            raise LabError(f"sample_every must be a positive op count, not {sample_every!r}")
        if verify and self.name == "null":
            raise LabError("the null policy hands out fake addresses: no verify")
        options = ffi.new("struct lab_replay_options *")
        options.verify = bool(verify)
        options.free_remaining = bool(free_remaining)
        options.sample_every = sample_every
        options.stop_after = stop_after or 0
        if time_limit is not None:
            if not time_limit > 0:
                raise LabError(f"time_limit must be a positive number of seconds, "
                               f"not {time_limit!r}")
            options.time_limit_ns = int(time_limit * 1e9)
        capacity = n // sample_every + 3
        samples = ffi.new("struct lab_sample[]", capacity)
        result = ffi.new("struct lab_replay_result *")
        ops = ffi.from_buffer("struct lab_op[]", packed.data) if packed.n_ops else ffi.NULL
        status = lib.lab_replay(self._c, ops, packed.n_ops, packed.n_objects, options,
                                samples, capacity, result)
        if status == lib.LAB_ERR_NOMEM:
            raise MemoryError("could not map the replay's object table")
        if status != lib.LAB_OK:
            what = "bad trace" if status == lib.LAB_ERR_TRACE else f"{self.name} broke a block"
            raise LabError(f"{what} at op {result.error_op}: "
                           f"{_CHECKS.get(result.error_detail, 'unknown check')}")
        series = [Sample(s.op, s.footprint, s.live_bytes, s.usable_bytes,
                         None if s.free_total == 2 ** 64 - 1 else s.free_total,
                         None if s.free_largest == 2 ** 64 - 1 else s.free_largest)
                  for s in samples[0:result.samples]]
        return ReplayResult(
            policy=self.name, ops=result.ops, mallocs=result.mallocs, frees=result.frees,
            reallocs=result.reallocs, failed=result.failed,
            skipped_frees=result.skipped_frees, peak_footprint=result.peak_footprint,
            final_footprint=result.final_footprint, peak_live=result.peak_live,
            internal_at_peak=result.internal_at_peak, peak_internal=result.peak_internal,
            elapsed_ns=result.elapsed_ns, minor_faults=result.minor_faults,
            major_faults=result.major_faults, verified=bool(verify), series=series,
            timed_out=bool(result.timed_out), trace_ops=n)

    def __repr__(self):
        return f"<lab.Policy {self.name}>"


# ---- results -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sample:
    """One point of a replay's time series, after ``op`` ops. free_total and
    free_largest are None for ptmalloc and glibc."""
    op: int
    footprint: int
    live_bytes: int
    usable_bytes: int
    free_total: object
    free_largest: object

    @property
    def external_fragmentation(self):
        """1 - largest free / total free (0 with nothing free; None when unknown)."""
        if self.free_total is None:
            return None
        return 1 - self.free_largest / self.free_total if self.free_total else 0.0


@dataclasses.dataclass
class ReplayResult:
    """What one replay measured.

    ``peak_footprint``: the most bytes the policy held from the OS (region policies: the
    high-water mark of their region and side tables, which never shrinks; ptmalloc and
    glibc: their heap and mmapped bytes beyond what they held before, at the samples).
    ``peak_live``: the most requested bytes live at once; ``internal_at_peak``: usable
    minus requested bytes at that moment. ``external_fragmentation`` is 1 - largest free /
    total free below the high-water mark, averaged over the samples (``_max`` the worst).
    ``failed``: requests the policy refused (its region full, a bitmap request above the
    block size); ``skipped_frees``: frees and reallocs of objects whose malloc failed.
    ``elapsed_ns``: the loop (with the pattern checks when ``verified``), sampling taken
    out; ``loop_ns_per_op``: the loop alone (the null policy), filled by :func:`replay`
    with ``baseline=True``. ``timed_out``: a time limit stopped the run after ``ops`` of
    ``trace_ops`` ops (every figure then covers only those).
    """
    policy: str
    ops: int
    mallocs: int
    frees: int
    reallocs: int
    failed: int
    skipped_frees: int
    peak_footprint: int
    final_footprint: int
    peak_live: int
    internal_at_peak: int
    peak_internal: int
    elapsed_ns: int
    minor_faults: int
    major_faults: int
    verified: bool
    series: list = dataclasses.field(repr=False, default_factory=list)
    loop_ns_per_op: object = None
    timed_out: bool = False
    trace_ops: int = 0

    @property
    def ns_per_op(self):
        return self.elapsed_ns / self.ops if self.ops else 0.0

    @property
    def policy_ns_per_op(self):
        """ns per op minus the loop's own (None without a baseline)."""
        if self.loop_ns_per_op is None:
            return None
        return max(0.0, self.ns_per_op - self.loop_ns_per_op)

    def _fragments(self):
        return [f for f in (s.external_fragmentation for s in self.series) if f is not None]

    @property
    def external_fragmentation(self):
        values = self._fragments()
        return sum(values) / len(values) if values else None

    @property
    def external_fragmentation_max(self):
        values = self._fragments()
        return max(values) if values else None

    @property
    def overhead(self):
        """peak footprint / peak live (1.0 is perfect)."""
        return self.peak_footprint / self.peak_live if self.peak_live else None

    def as_dict(self):
        out = dataclasses.asdict(self)
        out.update(ns_per_op=self.ns_per_op, policy_ns_per_op=self.policy_ns_per_op,
                   external_fragmentation=self.external_fragmentation,
                   external_fragmentation_max=self.external_fragmentation_max,
                   overhead=self.overhead)
        return out


def _baseline(packed):
    """ns per op of the loop alone: the null policy over the same ops, no checks."""
    with Policy("null") as null:
        return null.replay(packed, verify=False, sample_every=max(1, packed.n_ops)).ns_per_op


def replay(trace, policy, region_size=None, verify=True, sample_every=None, baseline=True,
           time_limit=None, **params):
    """Replay ``trace`` on a fresh ``policy`` (a name of :data:`POLICIES`) and return a
    :class:`ReplayResult`. ``verify`` writes and checks a pattern in every block (off for
    timing); ``sample_every`` ops between points of the series (default: 400 points);
    ``baseline`` also times the null policy to give the loop's own cost per op;
    ``time_limit`` (seconds) stops a slow policy part way (``timed_out``). Other
    keywords (min_block, pool_size, block_size, slab_size) go to :class:`Policy`."""
    packed = pack(trace)
    if policy in REAL_POLICIES and not os.environ.get(_CHILD):
        result = _replay_in_fresh_process(packed, policy, verify, sample_every, time_limit)
    else:
        with Policy(policy, region_size=region_size, **params) as p:
            result = p.replay(packed, verify=verify, sample_every=sample_every,
                              time_limit=time_limit)
    if baseline:
        result.loop_ns_per_op = _baseline(packed)
    return result


# The real allocators serve this interpreter too: in this process their footprint would
# be blurred by what they already hold free (and reuse first). In a fresh interpreter our
# core is untouched, and a new thread there gets a new, empty glibc arena.
REAL_POLICIES = ("ptmalloc", "glibc")
_CHILD = "PYMALLOC_REAL_LAB_CHILD"


def _replay_in_fresh_process(packed, policy, verify, sample_every, time_limit):
    import pickle
    import subprocess
    import sys
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="pymalloc-real-lab-", suffix=".ops") as ops:
        ops.write(packed.data)
        ops.flush()
        request = pickle.dumps((ops.name, packed.n_ops, packed.n_objects, policy, verify,
                                sample_every, time_limit))
        proc = subprocess.run([sys.executable, "-c", "import pymalloc_real.lab as l; l._child()"],
                              input=request, capture_output=True,
                              env=dict(os.environ, **{_CHILD: "1"}))
    if proc.returncode != 0:
        raise LabError(f"replaying under {policy} in a fresh process failed (exit "
                       f"{proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    return pickle.loads(proc.stdout)


def _child():
    """The fresh process's side of _replay_in_fresh_process: request on stdin (pickled),
    the ReplayResult on stdout (pickled)."""
    import pickle
    import sys
    path, n_ops, n_objects, policy, verify, sample_every, time_limit = pickle.loads(sys.stdin.buffer.read())
    with open(path, "rb") as f:
        packed = _Packed(f.read(), n_ops, n_objects)

    def run():
        with Policy(policy) as p:
            box.append(p.replay(packed, verify=verify, sample_every=sample_every,
                                time_limit=time_limit))

    # A new thread gets a new glibc arena: empty, so nothing the interpreter freed is
    # reused by the trace and hidden from its footprint. (Our core is untouched here.)
    import threading
    box = []
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if not box:
        raise SystemExit(1)
    sys.stdout.buffer.write(pickle.dumps(box[0]))


def _size(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclasses.dataclass
class Comparison:
    """The replays of one trace under several policies: :meth:`as_table` (Markdown),
    :meth:`as_dict`, :meth:`plot` (footprint over time)."""
    results: list
    n_ops: int
    loop_ns_per_op: float
    description: str = ""

    def __getitem__(self, policy):
        for r in self.results:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    def as_table(self):
        rows = ["| policy | peak footprint | / peak live | internal frag. at peak | "
                "external frag. mean / max | failed | ns/op | minor faults |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            ext = ("n/a" if r.external_fragmentation is None else
                   f"{r.external_fragmentation:.2f} / {r.external_fragmentation_max:.2f}")
            over = f"{r.overhead:.2f}x" if r.overhead else "-"
            name = (f"{r.policy} (stopped by the time limit after {r.ops:,} of "
                    f"{r.trace_ops:,} ops)" if r.timed_out else r.policy)
            rows.append(f"| {name} | {_size(r.peak_footprint)} | {over} | "
                        f"{_size(r.internal_at_peak)} | {ext} | {r.failed:,} | "
                        f"{r.ns_per_op:.0f} | {r.minor_faults:,} |")
        return "\n".join(rows)

    def as_dict(self):
        return {"ops": self.n_ops, "loop_ns_per_op": self.loop_ns_per_op,
                "results": [r.as_dict() for r in self.results]}

    def plot(self, path, title=None):
        """Footprint over time per policy (and the live bytes) into a PNG; returns the
        path. Needs matplotlib."""
        from matplotlib.figure import Figure     # optional dependency: only when plotting
        import matplotlib
        palette = matplotlib.colormaps["tab20"].colors
        figure = Figure(figsize=(10, 5.5))
        ax = figure.add_subplot()
        for n, r in enumerate(self.results):
            label = r.policy + (f" (stopped at {r.ops:,})" if r.timed_out else "")
            real = r.policy in ("ptmalloc", "glibc")
            ax.plot([s.op for s in r.series], [s.footprint / 2 ** 20 for s in r.series],
                    label=label, color=palette[(2 * n) % 20 + (n >= 10)],
                    linewidth=2.2 if real else 1.3, linestyle=":" if real else "-")
        # The live bytes are the trace's, the same under every policy that took every
        # request: drawn from the longest run.
        longest = max(self.results, key=lambda r: (r.ops, -r.failed), default=None)
        if longest and longest.series:
            ax.plot([s.op for s in longest.series],
                    [s.live_bytes / 2 ** 20 for s in longest.series],
                    color="black", linestyle="--", linewidth=1.5, label="live (requested)")
        ax.set_xlabel("operations")
        ax.set_ylabel("footprint (MiB)")
        ax.set_title(title or f"Footprint over time{': ' + self.description if self.description else ''}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        return path


def compare(trace, policies=None, region_size=None, verify=True, sample_every=None,
            description="", time_limit=None, **params):
    """Replay ``trace`` under each of ``policies`` (default: all) and return a
    :class:`Comparison`. ``time_limit`` (seconds per policy) stops the slow ones (the
    fits and the minimal allocator are O(free blocks) per op) part way."""
    packed = pack(trace)
    names = list(POLICIES if policies is None else policies)
    for name in names:
        if name not in POLICIES:
            raise LabError(f"unknown policy {name!r}; the policies are {', '.join(POLICIES)}")
    loop = _baseline(packed)
    results = []
    for name in names:
        mine = {k: v for k, v in params.items() if v is not None}
        result = replay(packed, name, region_size=region_size, verify=verify,
                        sample_every=sample_every, baseline=False, time_limit=time_limit,
                        **mine)
        result.loop_ns_per_op = loop
        results.append(result)
    return Comparison(results, packed.n_ops, loop, description)


# ---- pictures ----------------------------------------------------------------------------------

_CELL = {"used": "#", "free": ".", "meta": "m"}


def picture(trace, policy, at_op=None, width=100, path=None, **params):
    """A policy's region after ``at_op`` ops of ``trace`` (default: all) as text: one
    character per equal slice of the used part of the region (up to the high-water
    mark), ``#`` used, ``.`` free, ``+`` both, ``m`` the policy's bookkeeping; then a
    line of totals. With ``path``, also a PNG of the blocks along the address line."""
    if policy not in REGION_POLICIES:
        raise LabError(f"{policy} has no region of the lab's to draw; pick one of "
                       f"{', '.join(REGION_POLICIES)}")
    if not isinstance(width, int) or width < 10:
        raise LabError(f"width must be at least 10 characters, not {width!r}")
    with Policy(policy, **params) as p:
        p.replay(trace, verify=True, stop_after=at_op, free_remaining=False)
        blocks = p.walk()
        stats = p.stats()
    base = stats["region_base"]
    shown = [b for b in blocks if b.kind != "untouched"]
    end = max((b.span_start + b.span_size for b in shown), default=base)
    extent = max(end - base, 1)
    cells = [dict() for _ in range(width)]
    for b in shown:
        start, stop = b.span_start - base, b.span_start - base + b.span_size
        first, last = start * width // extent, min(width - 1, (stop - 1) * width // extent)
        for c in range(first, last + 1):
            lo, hi = max(start, c * extent / width), min(stop, (c + 1) * extent / width)
            cells[c][b.kind] = cells[c].get(b.kind, 0) + max(0.0, hi - lo)
    line = []
    for cell in cells:
        kinds = [k for k, v in cell.items() if v > 0]
        if not kinds:
            line.append(" ")
        elif "used" in kinds and "free" in kinds:
            line.append("+")
        else:
            line.append(_CELL[max(kinds, key=lambda k: cell[k])])
    used = [b for b in blocks if b.kind == "used"]
    free = [b for b in blocks if b.kind == "free"]
    moment = f"after {at_op:,} ops" if at_op else "at the end of the trace"
    text = (f"{policy} {moment}: {_size(extent)} from {base:#x} ({extent / width:.0f} B per "
            f"character)\n|{''.join(line)}|\n"
            f"{len(used):,} used blocks ({_size(sum(b.size for b in used))}), "
            f"{len(free):,} free ({_size(sum(b.span_size for b in free))}, largest "
            f"{_size(max((b.span_size for b in free), default=0))}); footprint "
            f"{_size(stats['footprint'])}")
    if path:
        _draw_picture(path, policy, moment, blocks, base, extent)
    return text


def _draw_picture(path, policy, moment, blocks, base, extent):
    from matplotlib.figure import Figure
    figure = Figure(figsize=(12, 2.2))
    ax = figure.add_subplot()
    colors = {"used": "#d9534f", "free": "#5cb85c", "meta": "#777777"}
    for kind, color in colors.items():
        spans = [((b.span_start - base) / 1024, b.span_size / 1024)
                 for b in blocks if b.kind == kind and b.span_start - base < extent]
        if spans:
            ax.broken_barh(spans, (0, 1), facecolors=color, edgecolor="white",
                           linewidth=0.2, label=kind)
    ax.set_xlim(0, extent / 1024)
    ax.set_yticks([])
    ax.set_xlabel("offset in the region (KiB)")
    ax.set_title(f"{policy} {moment}")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
