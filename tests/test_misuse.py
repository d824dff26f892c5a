"""Misuse from Python raises a clear exception and never crashes the interpreter:
double free, use after free, out-of-bounds access, bad sizes and types, exported
buffers, refusal by the OS, and heap corruption found by the core's checks."""
import contextlib

import pytest

import pymalloc_real as prm
from helpers import KiB, MiB, fresh_interpreter
from pymalloc_real._core import ffi, lib


def test_double_free_raises_and_heap_stays_sound():
    block = prm.malloc(100)
    block.free()
    with pytest.raises(prm.DoubleFree):
        block.free()
    with pytest.raises(prm.DoubleFree):
        prm.free(block)
    prm.check()


def test_context_manager_frees_once():
    with prm.malloc(64) as block:
        block.write(b"x")
    assert block.freed
    with pytest.raises(prm.DoubleFree):
        block.free()


@pytest.mark.parametrize("use", [
    lambda b: b.read(1),
    lambda b: b.write(b"x"),
    lambda b: b.fill(0),
    lambda b: b.touch(),
    lambda b: b.usable_size,
    lambda b: b.buffer,
    lambda b: b.cdata,
    lambda b: prm.realloc(b, 10),
])
def test_use_after_free_raises(use):
    block = prm.malloc(100)
    block.free()
    with pytest.raises(prm.UseAfterFree):
        use(block)
    assert "freed" in repr(block)


@pytest.mark.parametrize("access", [
    lambda b: b.read(9),
    lambda b: b.read(1, 8),
    lambda b: b.read(-1),
    lambda b: b.read(2, -1),
    lambda b: b.write(b"123456789"),
    lambda b: b.write(b"1", 8),
    lambda b: b.write(b"1", -1),
    lambda b: b.fill(1, 4, 5),
])
def test_out_of_bounds_raises_index_error(access):
    block = prm.malloc(8)
    with pytest.raises(IndexError):
        access(block)
    with pytest.raises(prm.OutOfBounds):
        access(block)
    block.free()


def test_reads_and_writes_within_bounds():
    block = prm.malloc(10)
    assert block.write(b"0123456789") == 10
    assert block.read() == b"0123456789"
    assert block.read(3, 7) == b"789"
    block.write(bytearray(b"ab"), 4)
    assert bytes(block.buffer) == b"0123ab6789"
    block.fill(0x41, 8)
    assert block.read(2, 8) == b"AA"
    with pytest.raises(ValueError):
        block.fill(256)
    block.free()


@pytest.mark.parametrize("size", [-1, -(2 ** 70)])
def test_negative_sizes_are_value_errors(size):
    for allocate in (prm.malloc, lambda n: prm.calloc(1, n), lambda n: prm.memalign(64, n)):
        with pytest.raises(ValueError, match=str(size)):
            allocate(size)
    block = prm.malloc(10)
    with pytest.raises(ValueError):
        prm.realloc(block, size)
    assert not block.freed, "a failed realloc leaves the block valid"
    block.free()


@pytest.mark.parametrize("size", [2 ** 64, 2 ** 100, 2 ** 64 - 1, 2 ** 63, 2 ** 62 + 12345])
def test_absurd_sizes_are_memory_errors_naming_the_size(size):
    with pytest.raises(MemoryError, match=str(size)):
        prm.malloc(size)
    with pytest.raises(MemoryError, match=str(size)):
        prm.memalign(4096, size)
    block = prm.malloc(10)
    with pytest.raises(MemoryError, match=str(size)):
        prm.realloc(block, size)
    block.write(b"still here")
    block.free()
    prm.check()


def test_calloc_overflow_is_reported():
    with pytest.raises(MemoryError, match="overflows"):
        prm.calloc(2 ** 33, 2 ** 33)
    with pytest.raises(MemoryError):
        prm.calloc(2 ** 70, 1)
    with pytest.raises(ValueError):
        prm.calloc(-1, 10)


@pytest.mark.parametrize("bad", [1.5, "10", None, b"1"])
def test_wrong_types_are_type_errors(bad):
    with pytest.raises(TypeError):
        prm.malloc(bad)
    with pytest.raises(TypeError):
        prm.free(bad if bad is not None else 1)
    with pytest.raises(TypeError):
        prm.Block(bad)


@pytest.mark.parametrize("alignment", [0, -8, 3, 24, 48, 1000])
def test_memalign_rejects_alignment_that_is_not_a_power_of_two(alignment):
    with pytest.raises(ValueError, match="power of two"):
        prm.memalign(alignment, 100)


def test_mallopt_rejects_unknown_parameters_and_bad_values():
    with pytest.raises(ValueError, match="unknown"):
        prm.mallopt(42, 1)
    with pytest.raises(ValueError, match="M_MXFAST"):
        prm.mallopt(prm.M_MXFAST, 1000)
    with pytest.raises(ValueError, match="M_MMAP_THRESHOLD"):
        prm.mallopt(prm.M_MMAP_THRESHOLD, 64 * MiB)
    with pytest.raises(ValueError):
        prm.mallopt(prm.M_TOP_PAD, 2 ** 40)
    with pytest.raises(ValueError):
        prm.malloc_trim(-1)


def test_free_none_is_a_no_op():
    prm.free(None)
    assert prm.realloc(None, 10).size == 10


def test_realloc_to_zero_frees():
    block = prm.malloc(100)
    assert prm.realloc(block, 0) is None
    assert block.freed


def test_live_buffer_blocks_free_and_realloc():
    block = prm.malloc(64)
    view = block.buffer
    view[0:3] = b"abc"
    with pytest.raises(BufferError):
        block.free()
    with pytest.raises(BufferError):
        prm.realloc(block, 128)
    assert not block.freed and block.read(3) == b"abc"
    sliced = view[1:]
    view.release()
    with pytest.raises(BufferError):
        block.free()                       # the slice still exports the memory
    sliced.release()
    with block.buffer as again:
        assert again[2] == ord("c")
    block.free()


def test_os_refusal_raises_memory_error_with_the_size():
    lib.prm_inject_os_failures(0, 1000)       # brk growth refused
    lib.prm_inject_os_failures(1, 1000)       # mmap refused
    try:
        with pytest.raises(MemoryError, match=r"%d bytes: the OS refused \(ENOMEM" % (64 * MiB)):
            prm.malloc(64 * MiB)
    finally:
        lib.prm_inject_os_failures(0, 0)
        lib.prm_inject_os_failures(1, 0)
    block = prm.malloc(64 * MiB)            # and the allocator recovers afterwards
    block.free()
    prm.check()


# ---- corruption found by the core ----------------------------------------------------

def _size_word(block):
    """The chunk's size word, just below the block: what an overflow would hit."""
    return ffi.cast("size_t *", block.address - 8)


@fresh_interpreter
def test_overflow_into_next_size_raises_and_arena_refuses_further_use():
    victim = prm.malloc(3000)
    neighbour = prm.malloc(3000)
    guard = prm.malloc(24)
    neighbour.fill(0)
    # An overflow out of `victim` rewrites the neighbour's size word to a smaller,
    # plausible size: the chunk "after" it now lies inside the neighbour's zeroed data.
    _size_word(neighbour)[0] = 0x100 | 1
    try:
        neighbour.free()
        raise AssertionError("corruption went unnoticed")
    except prm.HeapCorruption as error:
        assert error.check == "double free or corruption (!prev)", error
        assert error.pointer == neighbour.address - 16
    # The interpreter is alive; the damaged arena refuses work rather than crash.
    for attempt in (lambda: prm.malloc(10), lambda: victim.free(), prm.check):
        try:
            attempt()
            raise AssertionError("the corrupt arena kept working")
        except prm.HeapCorruption as error:
            assert "unusable" in str(error) or "corrupt" in str(error), error
    del guard


@fresh_interpreter
def test_wild_size_is_refused_as_an_invalid_pointer():
    block = prm.malloc(3000)
    guard = prm.malloc(24)
    _size_word(block)[0] = 0x4141414141410 | 1        # leads far outside the heap
    try:
        block.free()
        raise AssertionError("a wild size went unnoticed")
    except prm.InvalidFree as error:
        assert "no heap segment" in str(error), error
    # Nothing was touched: the arena itself is sound, the damaged chunk is just lost.
    other = prm.malloc(100)
    other.free()
    del guard


@fresh_interpreter
def test_use_after_free_write_into_links_is_caught():
    a = prm.malloc(2000)
    guard = prm.malloc(24)
    b = prm.malloc(2000)
    guard2 = prm.malloc(24)
    address = a.address
    a.free()
    b.free()
    prm.malloc(5000).free()                           # sort both into their large bin
    # Write through a stale pointer into a's fd/bk: the next unlink must notice.
    links = ffi.cast("uintptr_t *", address)
    links[0] = 0x4141414141414140
    links[1] = 0x4242424242424240
    try:
        prm.malloc(2000)
        prm.malloc(2000)
        raise AssertionError("damaged links went unnoticed")
    except prm.HeapCorruption as error:
        assert "double-linked list" in str(error) or "corrupted" in str(error), error
    try:
        prm.malloc(10)
        raise AssertionError("the corrupt arena served another allocation")
    except prm.HeapCorruption as error:
        assert "arena unusable" in str(error), error
    del guard, guard2


@fresh_interpreter
def test_fasttop_double_free_in_c_is_caught():
    # A Block refuses a second free itself; call the core directly to show its check.
    p = lib.prm_malloc(24)
    assert lib.prm_free(p) == 0
    status = lib.prm_free(p)
    assert status == lib.PRM_ERR_CORRUPTION, status
    from pymalloc_real.heap import _core_error
    error = _core_error()
    assert isinstance(error, prm.HeapCorruption) and "fasttop" in error.check, error


@fresh_interpreter
def test_invalid_pointer_to_free_in_c_is_refused():
    block = prm.malloc(100)
    interior = ffi.cast("char *", block.cdata) + 8        # misaligned interior pointer
    assert lib.prm_free(interior) == lib.PRM_ERR_INVALID_POINTER
    from pymalloc_real.heap import _core_error
    error = _core_error()
    assert isinstance(error, prm.InvalidFree) and "free(): invalid pointer" in str(error)
    block.free()
    prm.check()


def test_sizes_accept_any_integer_like_object():
    class Index:
        def __index__(self):
            return 48

    block = prm.malloc(Index())
    assert block.size == 48
    block.free()
    assert prm.malloc(True).size == 1


def test_touch_is_bounded_like_a_write():
    block = prm.malloc(10000)
    block.touch(4096, 5904)
    with pytest.raises(prm.OutOfBounds):
        block.touch(4096, 6000)
    with pytest.raises(prm.OutOfBounds):
        block.touch(-1)
    block.free()


# ---- the misuse corpus (tests/c/misuse/) through Python ----------------------------------
# Each C program there has a twin here: the same misuse through the Python API (a Block
# refuses most of them itself) or, where a Block cannot commit it, through the core's C
# functions from Python. The core names the check and Python raises; the interpreter
# lives on. The cffi build has no thread cache, so a misuse that the preload library
# catches in the cache is caught here by the fast-bin check of the same kind.

def _raw_error():
    from pymalloc_real.heap import _core_error
    return _core_error()


def _expect(error, kind, check):
    assert isinstance(error, kind), error
    assert str(error).startswith(check) or getattr(error, "check", None) == check, error


@fresh_interpreter
def test_corpus_double_free_cache_and_fast_sizes():
    block = prm.malloc(64)
    block.free()
    with pytest.raises(prm.DoubleFree):
        block.free()
    p = lib.prm_malloc(64)
    lib.prm_free(p)
    assert lib.prm_free(p) == lib.PRM_ERR_CORRUPTION
    _expect(_raw_error(), prm.HeapCorruption, "double free or corruption (fasttop)")
    assert lib.prm_malloc(10) == ffi.NULL        # the arena refuses further work ...
    _expect(_raw_error(), prm.HeapCorruption, "arena unusable")
    assert prm.page_size() > 0                   # ... and the interpreter goes on


def _double_free_in_the_bins(size):
    p = lib.prm_malloc(size)
    guard = lib.prm_malloc(size)                 # keeps p from merging into top
    lib.prm_free(p)
    assert lib.prm_free(p) == lib.PRM_ERR_CORRUPTION
    _expect(_raw_error(), prm.HeapCorruption, "double free or corruption (!prev)")
    del guard


@fresh_interpreter                               # each corrupts its arena: one per process
def test_corpus_double_free_small_block():
    _double_free_in_the_bins(600)


@fresh_interpreter
def test_corpus_double_free_large_block():
    _double_free_in_the_bins(5000)


@fresh_interpreter
def test_corpus_double_free_mmapped_block_reads_no_unmapped_memory():
    p = lib.prm_malloc(1 << 20)
    assert prm.chunk_of(int(ffi.cast("uintptr_t", p))).kind == "mmapped"
    lib.prm_free(p)
    assert lib.prm_free(p) == lib.PRM_ERR_INVALID_POINTER
    _expect(_raw_error(), prm.InvalidFree, "free(): double free detected (munmapped chunk)")
    prm.check()                                  # nothing was damaged
    prm.malloc(1 << 20).free()


@pytest.mark.parametrize("foreign", ["stack-like buffer", "global", "foreign mapping"])
def test_corpus_free_of_memory_we_never_returned(foreign):
    import mmap
    keep = []
    if foreign == "stack-like buffer":           # memory of the interpreter's malloc
        buf = ffi.new("char[512]")
        keep.append(buf)
        address = (int(ffi.cast("uintptr_t", buf)) + 64) & ~15
    elif foreign == "global":                    # None is a static object of CPython
        address = (id(None) + 64) & ~15
    else:
        area = mmap.mmap(-1, 4 * 4096)
        keep.append(area)
        address = int(ffi.cast("uintptr_t", ffi.from_buffer(area))) + 4096 + 64
    assert lib.prm_free(ffi.cast("void *", address)) == lib.PRM_ERR_INVALID_POINTER
    _expect(_raw_error(), prm.InvalidFree, "free(): invalid pointer")
    prm.check()


# ---- malloc_usable_size of what malloc never returned (corpus: usable_size_*) ---------

class _UnmappedHeader:
    """A page of the test's own at an address whose preceding page is unmapped: where a
    chunk header would sit, nothing is mapped (reading it would fault). Made and
    unmapped through libc directly, so that no other mapping can be lost."""

    def __enter__(self):
        import ctypes
        import mmap
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mmap.restype = ctypes.c_void_p
        self.libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                   ctypes.c_int, ctypes.c_int, ctypes.c_long]
        self.libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        start = self.libc.mmap(None, 2 * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE,
                               mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        assert start not in (None, ctypes.c_void_p(-1).value)
        self.page = mmap.PAGESIZE
        self.address = start + self.page
        assert self.libc.munmap(start, self.page) == 0
        return self.address

    def __exit__(self, *exc):
        self.libc.munmap(self.address, self.page)


@pytest.mark.parametrize("foreign", ["global", "unmapped header", "interior"])
def test_corpus_usable_size_of_memory_we_never_returned(foreign):
    with contextlib.ExitStack() as stack:
        if foreign == "global":                  # None is a static object of CPython
            address = (id(None) + 64) & ~15
        elif foreign == "unmapped header":
            address = stack.enter_context(_UnmappedHeader())
        else:
            block = prm.malloc(256)
            block.fill(ord("A"))                 # no "header" inside may look valid
            stack.callback(block.free)
            address = block.address + 64
        with pytest.raises(prm.InvalidFree, match=r"malloc_usable_size\(\): invalid pointer"):
            prm.malloc_usable_size(address)
        assert lib.prm_usable_size(ffi.cast("void *", address)) == 0
        _expect(_raw_error(), prm.InvalidFree, "malloc_usable_size(): invalid pointer")
    prm.check()


@fresh_interpreter
def test_corpus_usable_size_of_a_freed_mmapped_block():
    block = prm.malloc(1 << 20)
    address = block.address
    assert prm.malloc_usable_size(address) == block.usable_size >= 1 << 20
    block.free()
    with pytest.raises(prm.InvalidFree, match="mapping was already given back"):
        prm.malloc_usable_size(address)
    with pytest.raises(prm.UseAfterFree):
        prm.malloc_usable_size(block)


def test_malloc_usable_size_of_live_blocks_null_and_bad_arguments():
    block = prm.malloc(100)
    assert prm.malloc_usable_size(block) == prm.malloc_usable_size(block.address) >= 100
    assert prm.malloc_usable_size(0) == 0            # NULL, as in C
    for bad in ("x", 1.5, None, True):
        with pytest.raises(TypeError):
            prm.malloc_usable_size(bad)
    with pytest.raises(ValueError):
        prm.malloc_usable_size(-16)
    block.free()


def test_corpus_free_of_an_interior_pointer():
    block = prm.malloc(256)
    block.fill(ord("A"))
    assert lib.prm_free(ffi.cast("void *", block.address + 64)) == lib.PRM_ERR_INVALID_POINTER
    _expect(_raw_error(), prm.InvalidFree, "free(): invalid pointer")
    block.free()
    prm.check()


@fresh_interpreter
def test_corpus_one_byte_overflow_into_the_next_size():
    a = prm.malloc(5000)
    b = prm.malloc(5000)
    guard = prm.malloc(5000)
    assert b.address == a.address + a.usable_size + 8, "neighbours expected"
    b.fill(0)
    a.fill(ord("A"))
    ffi.cast("char *", a.address)[a.usable_size] = b"A"     # one byte too many
    with pytest.raises(prm.HeapCorruption) as caught:
        b.free()
    assert caught.value.check == "double free or corruption (!prev)"
    del guard


@fresh_interpreter
def test_corpus_write_after_free_into_fast_bin_links():
    a = prm.malloc(64)
    address = a.address
    a.free()
    ffi.memmove(ffi.cast("char *", address), b"A" * 16, 16)   # use after free
    with pytest.raises(prm.HeapCorruption) as caught:
        prm.malloc(64)
        prm.malloc(64)
    assert caught.value.check == "malloc(): fastbin link corrupted", caught.value


@fresh_interpreter
def test_corpus_stale_pointer_stores_heap_pointers_into_unsorted_links():
    other = prm.malloc(600)
    node = prm.malloc(600)
    guard = prm.malloc(600)
    address = node.address
    node.free()
    links = ffi.cast("uintptr_t *", address)
    links[0] = links[1] = other.address                     # use after free
    with pytest.raises(prm.HeapCorruption) as caught:
        prm.malloc(600)
        prm.malloc(600)
    assert "double linked list corrupted" in caught.value.check, caught.value
    del guard


@fresh_interpreter
def test_corpus_realloc_of_a_freed_block():
    block = prm.malloc(5000)
    guard = prm.malloc(5000)
    address = block.address
    block.free()
    with pytest.raises(prm.UseAfterFree):
        prm.realloc(block, 6000)
    assert lib.prm_realloc(ffi.cast("void *", address), 6000) == ffi.NULL
    _expect(_raw_error(), prm.HeapCorruption, "realloc(): invalid pointer")
    del guard


def test_corpus_reallocarray_overflow_is_enomem_and_keeps_the_block():
    import errno
    block = prm.malloc(100)
    block.fill(ord("x"))
    ffi.errno = 0
    assert lib.prm_reallocarray(block.cdata, 2 ** 63, 4) == ffi.NULL
    assert ffi.errno == errno.ENOMEM
    assert block.read() == b"x" * 100
    block.free()


@fresh_interpreter
def test_corpus_canary_catches_an_overflow_that_stays_inside_the_chunk():
    prm.mallopt(prm.M_CANARY, 1)
    assert prm.stats().canary == 1
    block = prm.malloc(100)
    assert block.usable_size == 100              # the canary starts right after
    block.fill(ord("A"))
    ffi.cast("char *", block.address)[100] = b"A"            # one byte too many
    with pytest.raises(prm.HeapCorruption) as caught:
        prm.check()
    assert "canary overwritten" in str(caught.value)
    with pytest.raises(prm.HeapCorruption) as caught:
        block.free()
    assert caught.value.check == "free(): canary overwritten"
    assert "byte 100" in caught.value.detail
    prm.malloc(10).free()                        # the arena itself is sound


@fresh_interpreter
def test_canary_blocks_round_trip_through_every_allocation_call():
    prm.mallopt(prm.M_CANARY, 1)
    blocks = [prm.malloc(n) for n in (1, 24, 100, 1000, 5000, 300_000)]
    blocks.append(prm.calloc(10, 10))
    blocks.append(prm.memalign(4096, 100))
    for block in blocks:
        block.fill(7)
    prm.check()
    blocks = [prm.realloc(block, block.size * 3 + 1) for block in blocks]
    for block in blocks:
        block.fill(9)
    prm.check()
    p = lib.prm_malloc(40)
    lib.prm_free(p)
    assert lib.prm_free(p) != 0                  # the retired canary names a double free
    assert "double free" in str(_raw_error())
    for block in blocks:
        block.free()
    prm.check()
    prm.mallopt(prm.M_CANARY, 0)                 # nothing live: allowed again


@fresh_interpreter
def test_canary_cannot_be_switched_while_blocks_live():
    block = prm.malloc(10)
    with pytest.raises(ValueError, match="refused while blocks are live"):
        prm.mallopt(prm.M_CANARY, 1)
    block.free()
    prm.mallopt(prm.M_CANARY, 1)
    with pytest.raises(ValueError):
        prm.mallopt(prm.M_CANARY, 2)


@fresh_interpreter
def test_free_through_a_pointer_that_a_moving_realloc_left_behind():
    """mremap moved the block: its old header page is unmapped, and the registry, which
    remembers the old address, turns a free through the stale pointer into a report
    instead of a fault."""
    p = lib.prm_malloc(1 << 20)
    old = p
    for size in (64 << 20, 256 << 20, 1 << 30):      # until the kernel has to move it
        p = lib.prm_realloc(p, size)
        assert p != ffi.NULL
        if p != old:
            break
    assert p != old, "no realloc moved the mapping"
    assert lib.prm_free(old) == lib.PRM_ERR_INVALID_POINTER
    _expect(_raw_error(), prm.InvalidFree, "free(): double free detected (munmapped chunk)")
    assert lib.prm_free(p) == 0
    prm.check()
