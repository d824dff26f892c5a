"""A heap you can read: prm.show() / prm.heap_view() and `pymalloc-real heap`.

The golden file is the view of heapview.DEFAULT_OPS with addresses relative to their
region (``--relative``), so ASLR changes nothing while sizes, flags, bins, layout and the
hexdump's bytes must match exactly.
"""
import contextlib
import io
import os
import subprocess
import sys

import pytest

import pymalloc_real as prm
from helpers import HERE, ROOT, fresh_interpreter
from pymalloc_real import heapview
from pymalloc_real.introspect import BinEntry, Bins, Chunk

GOLDEN = os.path.join(HERE, "golden", "heap_default_ops.txt")


def golden():
    with open(GOLDEN, encoding="utf-8") as f:
        return f.read()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pymalloc_real", "heap", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_command_line_prints_the_golden_heap():
    proc = cli("--relative", "--hexdump", "1:0x30")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == golden()


@fresh_interpreter
def test_show_prints_the_golden_heap():
    blocks = heapview.run_ops(heapview.DEFAULT_OPS)
    names = {b: f"[{n}]" for n, b in enumerate(blocks) if not b.freed}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        prm.show(relative=True, hexdump=(blocks[1].address - 16, 0x30), names=names)
    assert out.getvalue() == golden()


@fresh_interpreter
def test_absolute_addresses_are_the_chunks_in_hex():
    blocks = heapview.run_ops("m 100, m 300, m 100, f 1")
    view = prm.heap_view(names={blocks[0]: "first"})
    text = str(view)
    for chunk in view.chunks:
        assert f"{chunk.address:#x}" in text
    line = next(l for l in text.splitlines() if l.strip().startswith(f"{blocks[0].address - 16:#x}"))
    assert line.split()[1:] == ["0x70", "P--", "in", "use", "first"]
    assert f"break      {prm.brk():#x} (the end of top)" in text
    assert repr(view).startswith("<HeapView ")


@fresh_interpreter
def test_runs_of_identical_chunks_fold_and_hexdump_rows_repeat_as_a_star():
    blocks = heapview.run_ops(", ".join(["m 40"] * 50) + ", m 512")
    text = str(prm.heap_view(ledger=False, hexdump=blocks[50]))
    assert "... 48 more like these, the last at" in text
    assert text.count("0x30     P--    in use") == 2
    dump = text[text.index("hexdump"):].splitlines()
    assert dump[1].startswith(f"  -- chunk {blocks[50].address - 16:#x}: 0x210 bytes, P--, in use")
    assert dump[3:5] == [f"  {blocks[50].address:#x}   {0:#018x} {0:#018x} " + "." * 16, "  *"]


def test_render_is_a_pure_function_of_the_dataclasses():
    """What another process's published heap will go through: no look at this heap."""
    base = 0x7f0000000000
    chunks = [
        Chunk(base, 0x20, "chunk", True, True, False, True, None, None, 1, 0),
        Chunk(base + 0x20, 0x90, "chunk", False, True, False, True, "fast", 7, 1, 0),
        Chunk(base + 0xb0, 0x1000, "top", False, True, False, True, None, None, 1, 0),
        Chunk(0x10000010, 0x3000, "mmapped", True, True, True, False, None, None, -1, -1,
              0x10000000, 0x10003010),
    ]
    bins = Bins({7: [BinEntry("fast", 7, base + 0x20, 0x90, 1)]}, [], {}, {})
    context = heapview.HeapContext(brk=0x5000, tcache_count=None, remote_pending=3)
    text = heapview.render(chunks, bins, context=context, relative=True,
                           hexdump=(base + 0x10, b"\x91" + bytes(7) + (base + 0x20).to_bytes(8, "little")))
    assert "arena1: arena1+0x0 .. arena1+0x10b0 (arena 1, 0x10b0 bytes)" in text
    assert "  arena1+0x20  0x90    P-A    free  fast[7]" in text
    assert "  fast      [7] arena1+0x20 (0x90)  (arena 1)" in text
    assert "  map0+0x10  0x3000  PM-    in use" in text
    assert "remote    3 chunks waiting on the remote-free stacks" in text
    assert "break      0x5000 (not the end of any top" in text
    assert "tcache" not in text                      # the source did not say
    assert "  arena1+0x10      0x0000000000000091 arena1+0x20" in text


def test_hexdump_and_names_refuse_what_they_cannot_show():
    with pytest.raises(prm.HeapViewError, match="is not inside one segment or mapped chunk"):
        prm.heap_view(hexdump=(16, 16), ledger=False)
    with pytest.raises(prm.HeapViewError, match="length must be 1 .. 65536"):
        prm.heap_view(hexdump=(16, 0), ledger=False)
    with pytest.raises(TypeError, match="expected a Block or an .address, length. tuple"):
        prm.heap_view(hexdump="x", ledger=False)
    with pytest.raises(TypeError, match="relative must be a bool, not str"):
        prm.heap_view(relative="yes")
    with pytest.raises(TypeError, match="names maps Blocks or int addresses"):
        prm.heap_view(names={"x": "y"}, ledger=False)
    with pytest.raises(TypeError, match="expected a str of operations, not int"):
        heapview.run_ops(3)


@pytest.mark.parametrize("args, message", [
    (["--json"], "--all and --json apply to another process's heap: give its PID"),
    (["1", "--relative"], "--ops, --hexdump and --relative apply to this process's heap"),
    (["--ops", "m 24, f 3"], "bad operation 'f 3': there is no block 3 yet (1 so far)"),
    (["--ops", "x 1"], "bad operation 'x 1': expected comma-separated operations: m SIZE"),
    (["--ops", "m 8, w 0 this is longer than eight"], "do not fit block 0's 8"),
    (["--hexdump", "zz"], "expected N or N:LEN"),
    (["--hexdump", "1:0"], "LEN must be 1 .. 65536"),
    (["--hexdump", "0x10:16"], "is not inside one segment or mapped chunk of our heap"),
    (["--ops", "m 24, f 0, m 24, f 1", "--hexdump", "7"], "the operations made blocks 0 .. 1"),
])
def test_command_line_mistakes_are_one_line_and_status_2(args, message):
    proc = cli(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pymalloc-real heap: error: ")
    assert message in lines[0]
