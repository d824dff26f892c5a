"""The running interpreter on our core: ``serve_python()`` makes the C core CPython's
allocator for the raw, mem and object domains (``PyMem_SetAllocator``), so the
interpreter's own objects live in our heap, where ``chunks()``, ``ledger()``, ``brk()``
and ``faults()`` see them.

    >>> import pymalloc_real as prm
    >>> with prm.serve_python() as served:
    ...     numbers = list(range(1_000_000))   # a million ints in our heap
    >>> served.counts["obj"]["served"] > 1_000_000
    True

The router (``csrc/python/serve.c``) wraps the allocators that were there before:
inside the block new memory comes from the core; every free and realloc goes to the
block's owner, asked in O(1) of the core's ownership map. Memory allocated before the
block and freed inside goes back to pymalloc or libc; memory allocated inside and freed
after comes back to us. That is why the router is installed on the first
``serve_python()`` and stays for the life of the process: leaving the block only sends
new memory to the previous allocators again (restoring them would hand them our blocks).

The whole process is served, every thread: the domains are process-wide. Blocks the
interpreter holds make ``prm.check()`` and the ledger larger, and they are not Blocks:
``prm.free`` knows nothing of them.
"""
import sys
import sysconfig
import threading

from . import _serve
from ._core import ffi, lib

__all__ = ["serve_python", "Serving", "ServeRefused", "in_our_heap"]


class ServeRefused(RuntimeError):
    """The interpreter cannot be served by our core (a free-threaded build, its debug
    allocator hooks, tracemalloc tracing when the router would first be installed)."""


def _address(name):
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))


_serve.init(*(_address(name) for name in (
    "prm_malloc", "prm_calloc", "prm_realloc", "prm_free", "prm_owns", "prm_take_error")))

_depth_lock = threading.Lock()
_depth = 0      # serve_python() blocks open, in every thread: serving while > 0


def refusal():
    """Why this interpreter cannot be served, or None when it can."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return ("this is a free-threaded CPython build: its garbage collector finds objects "
                "by walking mimalloc's heaps, so the object domain cannot be replaced")
    if _serve.state()["installed"]:
        return None          # the routers are in place: entering again is always possible
    name = _serve.allocator_name()
    if name is not None and name.endswith("_debug"):
        return (f"the interpreter runs its debug allocator hooks ({name}: PYTHONMALLOC=debug, "
                "-X dev or a debug build); our blocks would bypass their checks. Run without "
                "them (PYTHONMALLOC=pymalloc or malloc)")
    if hasattr(sys, "gettotalrefcount") and name is None:
        return "this is a debug CPython build, whose allocator hooks would be bypassed"
    import tracemalloc
    if tracemalloc.is_tracing():
        return ("tracemalloc is tracing: when it stops it reinstalls the allocators it "
                "saved, which would drop the router and hand our blocks to them; call "
                "tracemalloc.stop() first (starting it inside serve_python() is fine)")
    return None


class Serving:
    """The context manager ``serve_python()`` returns. ``counts`` (per domain: raw, mem,
    obj) says what the routers did so far, process-wide and cumulative:
    ``served`` new blocks from the core, ``passed`` new blocks from the previous
    allocator, ``freed_ours``/``freed_theirs`` and ``resized_ours``/``resized_theirs``
    frees and reallocs by owner."""

    def __init__(self):
        self._entered = False

    def __enter__(self):
        global _depth
        reason = refusal()
        if reason is not None:
            raise ServeRefused(f"serve_python: {reason}")
        with _depth_lock:
            if self._entered:
                raise RuntimeError("serve_python: this block is already entered")
            _serve.start()
            _depth += 1
            self._entered = True
        return self

    def __exit__(self, *exc):
        global _depth
        with _depth_lock:
            if self._entered:
                self._entered = False
                _depth -= 1
                if _depth == 0:
                    _serve.stop()
        return False

    @property
    def counts(self):
        state = _serve.state()
        return {domain: state[domain] for domain in ("raw", "mem", "obj")}

    @property
    def serving(self):
        """True while new interpreter memory comes from our core."""
        return _serve.state()["serving"]

    def __repr__(self):
        obj = self.counts["obj"]
        return (f"<Serving {'on' if self.serving else 'off'}: obj served={obj['served']:,} "
                f"freed ours={obj['freed_ours']:,} theirs={obj['freed_theirs']:,}>")


def in_our_heap(address):
    """True if the memory at ``address`` belongs to our heap (a heap segment or a mapped
    chunk): ``in_our_heap(id(obj))`` says where the interpreter put an object. O(1)."""
    if isinstance(address, bool) or not isinstance(address, int):
        raise TypeError(f"in_our_heap: expected an int address, not {type(address).__name__}")
    if address < 0 or address >= 1 << 64:
        raise ValueError(f"in_our_heap: {address} is not an address (0 .. 2**64-1)")
    return bool(lib.prm_owns(ffi.cast("void *", address)))


def serve_python():
    """A context manager: inside it the interpreter allocates from our core (raw, mem
    and object domains). Raises ServeRefused where the interpreter cannot be served."""
    return Serving()
