"""Allocation from Python: malloc, calloc, realloc, memalign, free, and ``Block``.

Each function calls the C core (``pymalloc_real._core``), which carves chunks out of
memory it obtained with real brk and mmap system calls. A ``Block`` is the Python
handle of one allocation. Like a pointer in C it does not free itself when it is
garbage collected: memory lives until ``free`` (or the ``with`` statement) says so, so
leaks can be studied. Unlike a pointer, a Block knows when it has been freed and
refuses to be used afterwards, and it checks every read and write against its size.
"""
import sys

from . import _fastpath
from ._core import ffi, lib
from .errors import DoubleFree, HeapCorruption, InvalidFree, OutOfBounds, UseAfterFree

__all__ = [
    "Block", "malloc", "calloc", "realloc", "memalign", "free", "mallopt",
    "malloc_trim", "malloc_usable_size", "M_MXFAST", "M_TRIM_THRESHOLD", "M_TOP_PAD",
    "M_MMAP_THRESHOLD", "M_MMAP_MAX", "M_CHECK_ACTION", "M_PERTURB", "M_ARENA_TEST",
    "M_ARENA_MAX", "M_CANARY", "M_HARDENED",
]

# mallopt parameters: glibc's numbers and meanings.
M_MXFAST = lib.PRM_M_MXFAST
M_TRIM_THRESHOLD = lib.PRM_M_TRIM_THRESHOLD
M_TOP_PAD = lib.PRM_M_TOP_PAD
M_MMAP_THRESHOLD = lib.PRM_M_MMAP_THRESHOLD
M_MMAP_MAX = lib.PRM_M_MMAP_MAX
M_CHECK_ACTION = lib.PRM_M_CHECK_ACTION
M_PERTURB = lib.PRM_M_PERTURB
M_ARENA_TEST = lib.PRM_M_ARENA_TEST
M_ARENA_MAX = lib.PRM_M_ARENA_MAX
# Ours, not glibc's: 1 gives every block a canary after its requested size, checked by
# free, realloc and check(); refused while any block is live.
M_CANARY = lib.PRM_M_CANARY
# Ours too: 1 turns on hardened mode (the canary, a quarantine for freed blocks, pages that
# trap for zero-size blocks and for freed mapped ones); refused while any block is live.
M_HARDENED = lib.PRM_M_HARDENED

_MALLOPT_NAMES = {
    M_MXFAST: "M_MXFAST", M_TRIM_THRESHOLD: "M_TRIM_THRESHOLD", M_TOP_PAD: "M_TOP_PAD",
    M_MMAP_THRESHOLD: "M_MMAP_THRESHOLD", M_MMAP_MAX: "M_MMAP_MAX",
    M_CHECK_ACTION: "M_CHECK_ACTION", M_PERTURB: "M_PERTURB",
    M_ARENA_TEST: "M_ARENA_TEST", M_ARENA_MAX: "M_ARENA_MAX", M_CANARY: "M_CANARY",
    M_HARDENED: "M_HARDENED",
}

_SIZE_MAX = (1 << (8 * ffi.sizeof("size_t"))) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1

_NULL = ffi.NULL


# ---- errors -------------------------------------------------------------------------

def _core_error():
    """The error the core reported to this thread, as an exception, or None."""
    err = ffi.new("prm_error *")
    status = lib.prm_take_error(err)
    if status == lib.PRM_OK:
        return None
    check = ffi.string(err.check).decode("utf-8", "replace")
    detail = ffi.string(err.detail).decode("utf-8", "replace")
    if status == lib.PRM_ERR_INVALID_POINTER:
        return InvalidFree(f"{check}: {detail} (ptr {err.pointer:#x})")
    return HeapCorruption(check, detail, err.pointer)


def _size_error(what, size):
    """Why cffi refused a size argument, as a clear exception."""
    if not isinstance(size, int):
        return TypeError(f"{what}: size must be an int, not {type(size).__name__}")
    if size < 0:
        return ValueError(f"{what}: size must be >= 0, got {size}")
    return MemoryError(f"{what}: cannot allocate {size} bytes: more than the address space holds")


def _allocation_failed(what, size, errno_value=None):
    error = _core_error()
    if error is not None:
        return error
    if errno_value is None:
        errno_value = ffi.errno
    reason = "the request is larger than any allocation can be" if size > (_SIZE_MAX >> 1) \
        else f"the OS refused ({_errno_name(errno_value)})"
    return MemoryError(f"{what}: cannot allocate {size} bytes: {reason}")


def _errno_name(number):
    import errno
    import os
    return f"{errno.errorcode.get(number, number)}: {os.strerror(number)}"


# ---- Block --------------------------------------------------------------------------

class Block(_fastpath.BlockBase):
    """One allocation from the pymalloc_real heap.

    ``address`` is the pointer malloc returned, ``size`` the bytes asked for and
    ``usable_size`` what the chunk really holds (malloc_usable_size). Reads and writes
    are bounded by ``size``. ``buffer`` is a writable memoryview; while any view of it
    is alive the block cannot be freed or reallocated (BufferError), as a bytearray
    cannot be resized while exported. ``free()`` (and the pointer, size and freed state)
    live in C, in ``_fastpath.BlockBase``: they are the hot path.
    """

    __slots__ = ()

    # -- state ----------------------------------------------------------------------

    @property
    def usable_size(self):
        """The bytes the chunk really provides (>= size), as malloc_usable_size says."""
        self._require_live("usable_size")
        return lib.prm_usable_size(self._pointer())

    @property
    def cdata(self):
        """The pointer as a cffi ``void *``, for passing to C code."""
        self._require_live("cdata")
        return ffi.cast("void *", self.address)

    def __repr__(self):
        state = "live" if self._live else "freed"
        return f"<Block {self.address:#x} size={self.size} {state}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._live:
            self.free()
        return False

    # -- memory access ------------------------------------------------------------------

    def read(self, length=None, offset=0):
        """``length`` bytes starting at ``offset`` (default: to the end of the block)."""
        self._require_live("read")
        _require_ints("read", offset=offset, length=length)
        if length is None:
            length = self.size - offset
        self._check_range("read", offset, length)
        return ffi.unpack(self._pointer() + offset, length)

    def write(self, data, offset=0):
        """Copy a bytes-like object into the block at ``offset``; returns its length."""
        self._require_live("write")
        _require_ints("write", offset=offset)
        view = memoryview(data).cast("B")
        self._check_range("write", offset, view.nbytes)
        ffi.memmove(self._pointer() + offset, view, view.nbytes)
        return view.nbytes

    def fill(self, byte, offset=0, length=None):
        """Set ``length`` bytes from ``offset`` (default: the rest of the block) to ``byte``."""
        self._require_live("fill")
        _require_ints("fill", byte=byte, offset=offset, length=length)
        if not 0 <= byte <= 255:
            raise ValueError(f"fill: byte must be in 0..255, got {byte}")
        if length is None:
            length = self.size - offset
        self._check_range("fill", offset, length)
        ffi.memmove(self._pointer() + offset, bytes([byte]) * length, length)

    @property
    def buffer(self):
        """A writable memoryview of the block's ``size`` bytes."""
        self._require_live("buffer")
        if self._exported is None:
            self._exported = ffi.buffer(self._pointer(), self.size)
        return memoryview(self._exported)

    def touch(self, offset=0, length=None):
        """Write one byte per page of ``length`` bytes from ``offset`` (default: the whole
        block), in C, keeping the contents: every page not yet backed by physical memory
        takes its first-touch page fault now, and nothing else faults."""
        self._require_live("touch")
        _require_ints("touch", offset=offset, length=length)
        if length is None:
            length = self.size - offset
        self._check_range("touch", offset, length)
        lib.prm_touch(self._pointer() + offset, length)

    # -- helpers --------------------------------------------------------------------------

    def _pointer(self):
        return ffi.cast("char *", self.address)

    def _require_live(self, what):
        if not self._live:
            raise UseAfterFree(f"{what} on a freed block: {self!r}")

    def _check_range(self, what, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfBounds(
                f"{what} of {length} bytes at offset {offset} leaves the block's {self.size} bytes")

    def _release_exports(self, what):
        # References to the exported buffer: our slot, the local name and getrefcount's
        # argument. Any more means a memoryview (or its .obj) is still alive.
        exported = self._exported
        if sys.getrefcount(exported) > 3:
            raise BufferError(
                f"cannot {what} {self!r} while memoryviews of it exist: release them first")
        self._exported = None


def _wrap(ptr, size):
    """A Block for memory the core just returned."""
    return _fastpath.wrap(int(ffi.cast("uintptr_t", ptr)), size)


def _fastpath_hook(event, subject, code):
    """Every exception the C fast path raises is made here: it returns the exception
    (or None when all is well), the fast path raises it."""
    if event == "size":
        return _size_error("malloc", subject)
    if event == "malloc":
        return _allocation_failed("malloc", subject, code)
    if event == "double free":
        return DoubleFree(f"free of a block that was already freed: {subject!r}")
    if event == "exports":
        subject._release_exports("free")          # raises BufferError if views are alive
        return None
    if event == "free":
        return _core_error() or InvalidFree(f"free refused {subject!r}")
    if event == "type":
        return TypeError(f"free: expected a Block, not {type(subject).__name__}")
    return RuntimeError(f"pymalloc_real fast path: unknown event {event!r}")


_fastpath.init(Block, int(ffi.cast("uintptr_t", ffi.addressof(lib, "prm_malloc"))),
               int(ffi.cast("uintptr_t", ffi.addressof(lib, "prm_free"))), _fastpath_hook)

# ---- allocation functions -------------------------------------------------------------

# malloc and free are the C fast path; their docstrings are in _fastpath.c.
malloc = _fastpath.malloc
free = _fastpath.free


def calloc(count, size):
    """Allocate ``count * size`` zeroed bytes; MemoryError if the product overflows."""
    try:
        ptr = lib.prm_calloc(count, size)
    except (TypeError, OverflowError):
        for value in (count, size):
            if not isinstance(value, int) or value < 0:
                raise _size_error("calloc", value) from None
        raise MemoryError(f"calloc({count}, {size}): {count * size} bytes is more than "
                          "the address space holds") from None
    total = count * size
    if ptr == _NULL:
        if total > _SIZE_MAX:
            raise MemoryError(f"calloc({count}, {size}): count * size = {total} overflows size_t")
        raise _allocation_failed("calloc", total)
    return _wrap(ptr, total)


def realloc(block, size):
    """Resize ``block`` to ``size`` bytes, returning a new Block (``block`` is then
    freed). As in glibc, ``realloc(None, n)`` is ``malloc(n)`` and ``realloc(b, 0)``
    frees ``b`` and returns None. On failure ``block`` stays valid."""
    if block is None:
        return malloc(size)
    _require_block(block, "realloc")
    block._require_live("realloc")
    if isinstance(size, int) and size == 0:
        block.free()
        return None
    if block._exported is not None:
        block._release_exports("realloc")
    try:
        ptr = lib.prm_realloc(block._pointer(), size)
    except (TypeError, OverflowError):
        raise _size_error("realloc", size) from None
    if ptr == _NULL:
        raise _allocation_failed("realloc", size)
    block._live = False
    return _wrap(ptr, size)


def memalign(alignment, size):
    """Allocate ``size`` bytes at an address that is a multiple of ``alignment``
    (a power of two)."""
    if isinstance(alignment, bool) or not isinstance(alignment, int):
        raise TypeError(f"memalign: alignment must be an int, not {type(alignment).__name__}")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"memalign: alignment must be a power of two, got {alignment!r}")
    if alignment > _SIZE_MAX:
        raise MemoryError(f"memalign: alignment {alignment} is larger than the address space")
    try:
        ptr = lib.prm_memalign(alignment, size)
    except (TypeError, OverflowError):
        raise _size_error("memalign", size) from None
    if ptr == _NULL:
        raise _allocation_failed(f"memalign({alignment})", size)
    return _wrap(ptr, size)


def malloc_usable_size(block_or_address):
    """What the chunk behind a pointer really holds, as C's malloc_usable_size says:
    for a Block (``UseAfterFree`` once freed) or a raw address (an int, 0 for NULL).
    The core looks a raw address up before it reads any header, so an address it never
    returned raises ``InvalidFree`` naming the check, as ``free`` of it would, and a
    free chunk's address gives 0."""
    if type(block_or_address) is Block:
        return block_or_address.usable_size
    if isinstance(block_or_address, bool) or not isinstance(block_or_address, int):
        raise TypeError(f"malloc_usable_size: expected a Block or an int address, not "
                        f"{type(block_or_address).__name__}")
    if not 0 <= block_or_address <= _SIZE_MAX:
        raise ValueError(f"malloc_usable_size: {block_or_address:#x} is not an address")
    usable = lib.prm_usable_size(ffi.cast("void *", block_or_address))
    error = _core_error()
    if error is not None:
        raise error
    return usable


def _require_ints(what, **values):
    """TypeError naming the argument unless each value is an int (None: the default)."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{what}: {name} must be an int, not {type(value).__name__}")


def _require_block(obj, what):
    if type(obj) is not Block:
        raise TypeError(f"{what}: expected a Block, not {type(obj).__name__}")


# ---- tuning ---------------------------------------------------------------------------

def mallopt(param, value):
    """Set an allocator parameter, with glibc's names and meanings (``M_MMAP_THRESHOLD``,
    ``M_TRIM_THRESHOLD``, ...). Setting a threshold turns off the dynamic mmap
    threshold, as in glibc. Raises ValueError for an unknown parameter or a refused value."""
    if isinstance(param, bool) or not isinstance(param, int):
        raise TypeError(f"mallopt: param must be an int (M_MMAP_THRESHOLD, ...), not "
                        f"{type(param).__name__}")
    name = _MALLOPT_NAMES.get(param)
    if name is None:
        raise ValueError(f"mallopt: unknown parameter {param!r}: expected one of "
                         f"{', '.join(sorted(_MALLOPT_NAMES.values()))}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"mallopt({name}, {value!r}): value must be an int, not "
                        f"{type(value).__name__}")
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"mallopt({name}, {value!r}): value must be an int that fits a C int")
    if not lib.prm_mallopt(param, value):
        error = _core_error()
        if error is not None:
            raise error
        if param in (M_CANARY, M_HARDENED) and value in (0, 1):
            raise ValueError(f"mallopt({name}, {value}): refused while blocks are live; "
                             "a block has a canary or not from its birth, so switch it "
                             "before the first malloc")
        raise ValueError(f"mallopt({name}, {value}): value refused")


def malloc_trim(pad=0):
    """Give free memory back to the OS: lower the break down to ``pad`` bytes above the
    last chunk in use, and MADV_DONTNEED the whole free pages inside the heap.
    Returns True if anything was released."""
    if isinstance(pad, bool) or not isinstance(pad, int):
        raise TypeError(f"malloc_trim: pad must be an int, not {type(pad).__name__}")
    if pad < 0:
        raise ValueError(f"malloc_trim: pad must be >= 0, got {pad}")
    released = lib.prm_malloc_trim(min(pad, _SIZE_MAX))
    error = _core_error()
    if error is not None:
        raise error
    return bool(released)
