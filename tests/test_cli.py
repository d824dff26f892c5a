"""The `pymalloc-real` command line: the demo replays the seeds' walk-through and every
prediction holds, both in-process through main() and as a program; its verdicts come
from observations (a heap used beforehand makes it disagree); --help and --version.

The demo needs a pristine allocator, so each run is in a fresh process. Inside
@fresh_interpreter the test function is called without pytest fixtures, so stdout is
captured with redirect_stdout instead of capsys.
"""
import contextlib
import io
import json
import subprocess
import sys

import pytest

from helpers import KiB, MiB, ROOT, fresh_interpreter

import pymalloc_real as prm
from pymalloc_real.cli import WIDTH, main

OPERATIONS = ["A = malloc(30K)", "B = malloc(40K)", "C = malloc(200K)", "D = malloc(100K)",
              "free(C)", "free(B)", "B2 = malloc(40K)", "free(B2)", "free(D)"]


def _run_main(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def _run_program(*args):
    return subprocess.run([sys.executable, "-m", "pymalloc_real.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _region(line):
    start, end = (int(x, 16) for x in line.split()[0].split("-"))
    return start, end


@fresh_interpreter
def test_demo_json_in_process_every_prediction_holds():
    code, out = _run_main(["demo", "--json"])
    report = json.loads(out)
    steps = {s["operation"]: s for s in report["steps"]}
    assert [s["operation"] for s in report["steps"]] == OPERATIONS
    assert code == 0, [(s["operation"], s["reason"]) for s in report["steps"] if not s["held"]]
    assert report["held"] == report["total"] == len(OPERATIONS)
    assert all(s["held"] is True for s in report["steps"])

    for op in ("A = malloc(30K)", "B = malloc(40K)", "D = malloc(100K)"):
        step = steps[op]
        assert step["break_after"] > step["break_before"], op
        assert step["break_delta"] == step["break_after"] - step["break_before"] >= step["size"]
        assert not step["mmapped"] and step["counters"].get("brk_moves") == 1, step
    for op in ("A = malloc(30K)", "B = malloc(40K)", "C = malloc(200K)", "D = malloc(100K)"):
        assert steps[op]["minor_faults"] >= 1, "touching a new block takes first-touch faults"

    c = steps["C = malloc(200K)"]
    assert c["mmapped"] and c["break_delta"] == 0 and c["counters"] == {"mmap_calls": 1}
    start, end = _region(c["block_map"])
    assert start <= c["address"] and c["address"] + c["size"] <= end
    assert not start <= c["break_after"] - 1 < end, "C's mapping is not the heap"
    mmapped = [ch for ch in c["chunks"] if ch["kind"] == "mmapped"]
    assert [ch["mem"] for ch in mmapped] == [c["address"]] and mmapped[0]["flags"] == "-M-"

    free_c = steps["free(C)"]
    assert free_c["mmapped"] and free_c["block_map"] is None and free_c["break_delta"] == 0
    assert all(ch["kind"] != "mmapped" for ch in free_c["chunks"])

    b, b2 = steps["B = malloc(40K)"], steps["B2 = malloc(40K)"]
    assert b2["address"] == b["address"] and b2["break_delta"] == 0
    hole = [ch for ch in steps["free(B)"]["chunks"] if ch["mem"] == b["address"]]
    assert len(hole) == 1 and not hole[0]["in_use"] and hole[0]["bin"] == "unsorted"

    d, free_d = steps["D = malloc(100K)"], steps["free(D)"]
    assert free_d["break_after"] < free_d["break_before"] == d["break_after"]
    assert free_d["counters"].get("trims") == 1
    assert -free_d["break_delta"] >= 128 * KiB, "B and D go back to the kernel together"
    assert [ch["kind"] for ch in free_d["chunks"]] == ["chunk", "top"]
    assert "[heap]" in free_d["heap_map"]

    # The demo frees what it allocated: nothing of ours is in use afterwards.
    assert prm.stats().in_use_chunks == 0


def test_demo_as_a_program_every_prediction_holds():
    proc = _run_program("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    headers = [line for line in lines if line.startswith("[")]
    assert len(headers) == len(OPERATIONS)
    for header, operation in zip(headers, OPERATIONS):
        assert operation in header and header.endswith(" agrees"), header
    assert "DISAGREES" not in proc.stdout
    assert lines[-1] == f"{len(OPERATIONS)} of {len(OPERATIONS)} predictions held."
    assert max(len(line) for line in lines) <= WIDTH
    assert proc.stderr == ""


def test_demo_is_the_default_command():
    proc = _run_program()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("pymalloc-real demo:")


@fresh_interpreter
def test_demo_disagrees_when_the_heap_was_used_before():
    # A top chunk of 1 MiB left over from earlier work: A, B and D then come from it
    # without moving the break, and a block kept alive below A survives the trim.
    prm.mallopt(prm.M_TOP_PAD, MiB)
    kept = prm.malloc(64)
    code, out = _run_main(["demo"])
    assert code == 1, out
    first = next(line for line in out.splitlines() if line.startswith("[1/"))
    assert first.endswith(" DISAGREES"), first
    summary = " ".join(out.rsplit("\n\n", 1)[-1].split())
    assert "predictions held; DISAGREES at steps 1, " in summary, summary
    kept.free()


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pymalloc-real {prm.__version__}"


@pytest.mark.parametrize("argv, expected", [
    (["--help"], "demo"),
    (["demo", "--help"], "--json"),
])
def test_help(capsys, argv, expected):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pymalloc-real") and expected in out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err
