"""Readable reprs (issue 17, item 8): every public dataclass of the package prints short,
with addresses in hex and big containers summarised; the public API answers a wrong
type with TypeError naming the type it expected."""
import dataclasses
import importlib
import pkgutil

import pytest

import pymalloc_real as prm
from helpers import fresh_interpreter
from pymalloc_real import heapview
from pymalloc_real.preload.runner import RunReport
from pymalloc_real.reprs import short_repr


def public_dataclasses():
    found = []
    for info in pkgutil.walk_packages(prm.__path__, "pymalloc_real."):
        if ".cli" in info.name or info.name.endswith(("__main__", "._preload")):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and \
                    not name.startswith("_") and value.__module__ == module.__name__:
                found.append(value)
    return found


def test_every_public_dataclass_has_a_repr_of_its_own():
    classes = public_dataclasses()
    assert len(classes) >= 40          # the walk found the wings
    generated = [c.__qualname__ for c in classes if "__create_fn__" in c.__repr__.__qualname__]
    assert generated == []


@fresh_interpreter      # a pristine mmap threshold: 300 KiB is a mapped chunk
def test_introspection_prints_addresses_in_hex():
    with prm.malloc(100) as block, prm.malloc(300 * 1024) as mapped:
        chunk = prm.chunk_of(block)
        assert repr(chunk) == f"Chunk({chunk.address:#x}, size=0x70, P--, in use, arena 0)"
        big = prm.chunk_of(mapped)
        assert repr(big).startswith(f"Chunk({big.address:#x}, size={big.size:#x}, -M- mmapped, "
                                    f"in use, mapping {big.mapping_start:#x}-")
        segment = prm.segments()[0]
        assert repr(segment).startswith(f"Segment(start={segment.start:#x}, end={segment.end:#x}, ")
        arena = prm.arenas()[0]
        assert f"top={arena.top:#x}" in repr(arena)
        region = prm.region_of(block.address)
        assert repr(region).startswith(f"MapRegion(start={region.start:#x}, end={region.end:#x}")
        assert f"({segment.start:#x}, {segment.end:#x}, 'heap segment')" in repr(region)
        assert len(repr(prm.stats())) < 400 and "more fields" in repr(prm.stats())
        assert repr(prm.bins()).startswith("Bins(fast=")


def test_big_values_are_summarised():
    report = RunReport(command=["prog"] + [f"arg{i}" for i in range(1000)], allocator="ours",
                       library=None, pid=1, exit_status=0, signal=None, wall_time=0.5,
                       user_time=0.25, system_time=0.0, max_rss=1 << 20, minor_faults=3,
                       major_faults=0, stdout="x" * 50_000, stderr="")
    text = repr(report)
    assert len(text) < 400
    assert text.startswith("RunReport(command=['prog', 'arg0', 'arg1', ... 1,001 items], ")
    context = heapview.HeapContext(brk=0x5555_0000_1000, tcache_count=0)
    assert repr(context) == ("HeapContext(brk=0x555500001000, tcache_count=0, "
                             "remote_pending=None, mmap_threshold=None)")

    @dataclasses.dataclass
    class Wide:
        address: int
        data: bytes
        notes: str
        table: dict
    wide = Wide(0x1000, bytes(5000), "n" * 200, {i: i for i in range(100)})
    assert short_repr(wide) == ("Wide(address=0x1000, data=<5,000 bytes>, notes='" + "n" * 80 +
                                "'... (200 chars), table={0: 0, 1: 1, 2: 2, ... 100 items})")


@pytest.mark.parametrize("call, expected", [
    (lambda: prm.region_of("x"), "region_of: address must be an int, not str"),
    (lambda: prm.malloc_trim("x"), "malloc_trim: pad must be an int, not str"),
    (lambda: prm.memalign("x", 10), "memalign: alignment must be an int, not str"),
    (lambda: prm.mallopt("x", 1), "mallopt: param must be an int"),
    (lambda: prm.mallopt(prm.M_MMAP_THRESHOLD, "x"), "value must be an int, not str"),
    (lambda: prm.chunk_of("x"), "chunk_of: expected a Block or an int address, not str"),
    (lambda: prm.chunk_of(None), "chunk_of: expected a Block or an int address, not NoneType"),
    (lambda: prm.is_mapped("x"), "is_mapped: expected a Block or an int address, not str"),
    (lambda: prm.mapped_pages(1.5), "mapped_pages: expected a Block or an int address, not float"),
    (lambda: prm.residency("x"), "residency: expected a Block or an int address, not str"),
    (lambda: prm.maps("x"), "maps: pid must be an int, not str"),
    (lambda: prm.faults_from_stat(1.5), "faults_from_stat: pid must be an int, not float"),
    (lambda: prm.totals_by_kind("x"), "totals_by_kind: expected a list of MapRegion"),
    (lambda: prm.in_our_heap("x"), "in_our_heap: expected an int address, not str"),
])
def test_wrong_types_raise_type_error_naming_what_is_expected(call, expected):
    with pytest.raises(TypeError, match=expected.replace("(", r"\(")):
        call()


@pytest.mark.parametrize("method, args, expected", [
    ("read", ("x",), "read: length must be an int, not str"),
    ("read", (4, 1.5), "read: offset must be an int, not float"),
    ("write", (b"a", "x"), "write: offset must be an int, not str"),
    ("fill", ("x",), "fill: byte must be an int, not str"),
    ("fill", (1, 0, "x"), "fill: length must be an int, not str"),
    ("touch", ("x",), "touch: offset must be an int, not str"),
])
def test_block_methods_name_the_argument_of_the_wrong_type(method, args, expected):
    with prm.malloc(64) as block:
        with pytest.raises(TypeError, match=expected):
            getattr(block, method)(*args)
        assert block.read(3) == bytes(block.buffer[:3])        # still usable


def test_wrong_values_still_raise_value_error():
    with pytest.raises(ValueError, match="pad must be >= 0, got -1"):
        prm.malloc_trim(-1)
    with pytest.raises(ValueError, match="unknown parameter 42: expected one of M_ARENA_MAX"):
        prm.mallopt(42, 1)
    with pytest.raises(ValueError, match="pid must be >= 1, got 0"):
        prm.maps(0)
