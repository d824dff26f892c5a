"""serve_python(): the interpreter's raw, mem and object domains on our core.

Each test runs in a fresh interpreter without ``-X dev`` (whose debug hooks serving
refuses): the router stays installed for the life of a process and the interpreter's
blocks stay in our heap, which would change what later tests in this process see.
"""
import gc
import os
import subprocess
import sys
import threading

import pytest

import pymalloc_real as prm
from helpers import ROOT, fresh_plain_interpreter


def counts(domain="obj"):
    with prm.serve_python() as serving:   # entering and leaving changes no counts
        pass
    return serving.counts[domain]


@fresh_plain_interpreter
def test_a_million_ints_grow_our_heap():
    ledger_before, break_before, faults_before = prm.ledger(), prm.brk(), prm.faults()
    with prm.serve_python() as serving:
        assert serving.serving
        numbers = list(range(1_000_000))
        ledger_inside, break_inside, faults_inside = prm.ledger(), prm.brk(), prm.faults()
    assert not serving.serving
    # Each int above 256 (those below are cached) is a 28-byte object in a 48-byte chunk
    # of our heap, grown with brk.
    grown = ledger_inside.in_use_bytes - ledger_before.in_use_bytes
    assert (1_000_000 - 257) * 48 <= grown < (1_000_000 - 257) * 48 + 1024 * 1024
    assert break_inside - break_before >= 1_000_000 * 48
    assert faults_inside[0] - faults_before[0] >= 1_000_000 * 48 // 4096 // 2
    assert all(prm.in_our_heap(id(n)) for n in numbers[1000::997])
    assert prm.arenas()[0].in_use_chunks >= 1_000_000 - 257    # the chunk walk's count
    # The list's array (8 MB) is one mapped chunk of ours.
    assert prm.stats().hblkhd >= 8_000_000
    prm.check()
    in_use = prm.stats().in_use_bytes
    del numbers
    assert in_use - prm.stats().in_use_bytes >= (1_000_000 - 257) * 48 + 8_000_000
    prm.check()


@fresh_plain_interpreter
def test_created_inside_freed_after_come_back_to_us():
    with prm.serve_python():
        inside = [str(i) * 3 for i in range(20_000)]
    assert all(prm.in_our_heap(id(s)) for s in inside)
    in_use = prm.stats().in_use_bytes
    freed_before = counts()["freed_ours"]
    del inside
    assert counts()["freed_ours"] - freed_before >= 20_000
    assert in_use - prm.stats().in_use_bytes >= 20_000 * 48
    # Outside, new objects come from the previous allocator again.
    after = [str(i) * 3 for i in range(1000)]
    assert not any(prm.in_our_heap(id(s)) for s in after)
    prm.check()


@fresh_plain_interpreter
def test_created_before_freed_inside_go_to_their_owner():
    before = [str(i) * 3 for i in range(20_000)]
    assert not any(prm.in_our_heap(id(s)) for s in before)
    with prm.serve_python() as serving:
        theirs = serving.counts["obj"]["freed_theirs"]
        in_use = prm.stats().in_use_bytes
        del before
        assert serving.counts["obj"]["freed_theirs"] - theirs >= 20_000
        # Our heap lost nothing: those frees went to pymalloc.
        assert prm.stats().in_use_bytes >= in_use
    prm.check()


@fresh_plain_interpreter
def test_a_block_resized_after_serving_stays_ours():
    with prm.serve_python():
        growing = list(range(10))
    resized = counts("mem")["resized_ours"]
    growing.extend(range(100_000))      # the list's array is realloc'ed by its owner: us
    assert counts("mem")["resized_ours"] > resized
    assert sum(growing) == sum(range(10)) + sum(range(100_000))
    prm.check()


@fresh_plain_interpreter
def test_gc_collects_cycles_in_our_heap():
    class Node:
        def __init__(self):
            self.other = None
    gc.disable()           # the cycles wait for the collect() below
    with prm.serve_python():
        for _ in range(20_000):
            a, b = Node(), Node()
            a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 20_000 * 2
        gc.enable()
        survivors = [Node() for _ in range(1000)]
        for x, y in zip(survivors, survivors[1:]):
            x.other = y
    prm.check()
    del survivors, x, y
    gc.collect()
    prm.check()


@fresh_plain_interpreter
def test_a_big_dict_lives_and_dies_in_our_heap():
    in_use = prm.stats().in_use_bytes
    with prm.serve_python():
        table = {f"key{i}": (i, str(i)) for i in range(200_000)}
        assert prm.stats().in_use_bytes - in_use > 200_000 * 100
    assert table["key199999"] == (199999, "199999")
    # (the keys: the values' tuples may come from the interpreter's tuple free list)
    assert all(prm.in_our_heap(id(key)) for key in list(table)[::1000])
    del table
    assert prm.stats().in_use_bytes - in_use < 1024 * 1024
    prm.check()


@fresh_plain_interpreter
def test_threads_allocate_from_the_raw_domain_without_the_gil():
    import lzma          # its allocator is PyMem_RawMalloc, called with the GIL released
    payload = os.urandom(64 * 1024) + bytes(256 * 1024)
    errors = []

    def work():
        try:
            for _ in range(5):
                assert lzma.decompress(lzma.compress(payload, preset=1)) == payload
        except BaseException as error:       # noqa: BLE001 (reported below)
            errors.append(error)
    with prm.serve_python() as serving:
        raw = serving.counts["raw"]["served"]
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert serving.counts["raw"]["served"] - raw >= 4 * 5 * 2
    assert errors == []
    prm.check()


@fresh_plain_interpreter
def test_a_hundred_enter_exit_cycles():
    keep = []
    for cycle in range(100):
        with prm.serve_python():
            inside = {i: str(i) for i in range(500)}
            keep.append(inside)
            born_outside = keep.pop(0) if cycle % 2 and keep else None
        del born_outside
        keep.append([str(i) for i in range(100)])     # outside: the previous allocator
        if cycle % 10 == 0:
            prm.check()
    del keep, inside
    gc.collect()
    prm.check()
    nested = prm.serve_python()
    with prm.serve_python():
        with nested:
            pass
        assert counts() and prm.serve_python().serving   # the outer block still serves
    assert not prm.serve_python().serving


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, **env))


def test_the_debug_hooks_are_refused_clearly():
    proc = run_python("import pymalloc_real as prm\nwith prm.serve_python(): pass",
                      PYTHONMALLOC="debug")
    assert proc.returncode == 1
    assert "ServeRefused: serve_python: the interpreter runs its debug allocator hooks " \
           "(pymalloc_debug" in proc.stderr


def test_tracemalloc_before_the_first_serve_is_refused():
    proc = run_python("import tracemalloc, pymalloc_real as prm\ntracemalloc.start()\n"
                      "with prm.serve_python(): pass", PYTHONMALLOC="pymalloc")
    assert proc.returncode == 1
    assert "serve_python: tracemalloc is tracing" in proc.stderr


def test_a_free_threaded_build_is_refused(monkeypatch):
    import sysconfig
    real = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var",
                        lambda name: 1 if name == "Py_GIL_DISABLED" else real(name))
    with pytest.raises(prm.ServeRefused, match="free-threaded"):
        with prm.serve_python():
            pass
    assert not prm.serve_python().serving


def test_in_our_heap_answers_for_blocks_and_refuses_non_addresses():
    with prm.malloc(100) as block:
        assert prm.in_our_heap(block.address)
    assert not prm.in_our_heap(id(object()))
    with pytest.raises(TypeError, match="expected an int address, not str"):
        prm.in_our_heap("x")
    with pytest.raises(ValueError):
        prm.in_our_heap(-1)
