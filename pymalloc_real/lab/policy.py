"""One placement policy on real mmapped memory (``Policy``): malloc, free, realloc and
friends on it directly, its walk (``Block``), the slab policy's kmem caches
(``CacheInfo``), and the replay of a packed trace through the C loop.
"""


import dataclasses

from .._core import ffi, lib
from .packing import _CHECKS, _KINDS, _SAMPLES, DEFAULT_REGION, POLICIES, LabError, pack
from .results import ReplayResult, Sample
from ..reprs import readable


# ---- one policy --------------------------------------------------------------------------------

@readable
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


@readable
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
               free_remaining=True, time_limit=None, visit=None, sample_at=None):
        """Run the trace on this policy (see :func:`replay`); with ``free_remaining``
        false the objects still live stay, so :meth:`walk` shows the region then.
        ``time_limit`` (seconds) stops the loop once it has run that long (the result's
        ``timed_out`` and ``ops`` say where). ``visit(ops_done)`` is called at every
        sample while the loop is paused (the policy then holds exactly the objects live
        at that moment); an exception it raises stops nothing but is raised at the end.
        ``sample_at``: one more sample (and visit) after exactly that many ops."""
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
        raised = []
        if visit is not None:
            def on_sample(_context, ops_done):
                if not raised:
                    try:
                        visit(ops_done)
                    except BaseException as error:      # raised after the loop
                        raised.append(error)
            # `callback` keeps the cffi callback alive until the loop returns (the
            # struct field alone does not).
            options.visit = callback = ffi.callback("void(void *, uint64_t)", on_sample)
        if sample_at is not None:
            if not isinstance(sample_at, int) or sample_at < 1:
                raise LabError(f"sample_at must be a positive op count, not {sample_at!r}")
            options.sample_at = sample_at
        capacity = n // sample_every + 4
        samples = ffi.new("struct lab_sample[]", capacity)
        result = ffi.new("struct lab_replay_result *")
        ops = ffi.from_buffer("struct lab_op[]", packed.data) if packed.n_ops else ffi.NULL
        status = lib.lab_replay(self._c, ops, packed.n_ops, packed.n_objects, options,
                                samples, capacity, result)
        if raised:
            raise raised[0]
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
