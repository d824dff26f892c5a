"""The `pymalloc-real` command line: the demo's report for people (seven steps, the
walk-through's nine operations, verdicts computed from observations: a heap used
beforehand makes step 1 disagree and the exit status 1), `maps` for this process and
for another, --help, --version and usage errors.

Runs that need a pristine allocator are in a fresh process. Inside @fresh_interpreter
the test function is called without pytest fixtures, so stdout is captured with
redirect_stdout instead of capsys.
"""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time

import pytest

from helpers import KiB, MiB, ROOT, fresh_interpreter

import pymalloc_real as prm
from pymalloc_real.cli import WIDTH, main

OPERATIONS = ["A = malloc(30K)", "B = malloc(40K)", "C = malloc(200K)", "D = malloc(100K)",
              "free(C)", "free(B)", "B2 = malloc(40K)", "free(B2)", "free(D)"]
STEP_HEADER = re.compile(r"^== Step (\d): .* =* (agrees|DISAGREES|n/a)$")


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


# ---- demo ------------------------------------------------------------------------------------

def test_demo_report_shows_seven_steps_and_the_nine_operations():
    proc = _run_program("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    headers = [STEP_HEADER.match(line) for line in lines if line.startswith("== Step")]
    assert [int(m.group(1)) for m in headers] == list(range(7))
    assert all(m.group(2) in ("agrees", "n/a") for m in headers), proc.stdout
    operations = [line for line in lines if line.startswith("  [")]
    assert len(operations) == len(OPERATIONS)
    for header, operation in zip(operations, OPERATIONS):
        assert operation in header and header.endswith(" agrees"), header
    for label in ("predicted", "observed", "break", "faults", "memory"):
        assert sum(line.startswith(f"  {label} ") for line in lines) >= 7, label
    assert "Transparent huge pages:" in proc.stdout and "MADV_NOHUGEPAGE" in proc.stdout
    assert "DISAGREES" not in proc.stdout
    assert re.search(r"^\d of 7 steps agree with the seeds, 0 disagree", proc.stdout, re.M)
    assert max(len(line) for line in lines) <= WIDTH


def test_the_bare_command_prints_its_usage_and_runs_nothing():
    proc = _run_program()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("usage: pymalloc-real")
    assert all(name in proc.stdout for name in ("demo", "run", "compare", "pagesim"))
    assert "== Step" not in proc.stdout and proc.stderr == ""


@fresh_interpreter
def test_demo_step1_json_in_process_every_prediction_holds():
    code, out = _run_main(["demo", "--step", "1", "--json"])
    report = json.loads(out)
    assert [s["number"] for s in report["steps"]] == [1]
    step = report["steps"][0]
    steps = {s["operation"]: s for s in step["operations"]}
    assert [s["operation"] for s in step["operations"]] == OPERATIONS
    assert code == 0, [(s["operation"], s["reason"]) for s in step["operations"] if not s["held"]]
    assert step["verdict"] == "agrees" and all(s["held"] is True for s in step["operations"])

    for op in ("A = malloc(30K)", "B = malloc(40K)", "D = malloc(100K)"):
        s = steps[op]
        assert s["break_after"] > s["break_before"], op
        assert s["break_delta"] == s["break_after"] - s["break_before"] >= s["size"]
        assert not s["mmapped"] and s["counters"].get("brk_moves") == 1, s
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

    # The step's picture is taken after D = malloc(100K): C mapped, A, B, D on the heap.
    notes = {band["kind"]: " ".join(band["notes"]) for band in step["space"] if band["notes"]}
    assert "<- C " in notes["anonymous"] and "ours: mmapped chunk" in notes["anonymous"]
    assert all(f"<- {n} " in notes["heap"] for n in "ABD")

    # The demo frees what it allocated: nothing of ours is in use afterwards.
    assert prm.stats().in_use_chunks == 0


@fresh_interpreter
def test_demo_disagrees_when_the_heap_was_used_before():
    # A top chunk of 1 MiB left over from earlier work: A, B and D then come from it
    # without moving the break, and a block kept alive below A survives the trim.
    prm.mallopt(prm.M_TOP_PAD, MiB)
    kept = prm.malloc(64)
    code, out = _run_main(["demo", "--step", "1"])
    assert code == 1, out
    header = next(line for line in out.splitlines() if line.startswith("== Step 1"))
    assert header.endswith(" DISAGREES"), header
    first = next(line for line in out.splitlines() if line.startswith("  [1/"))
    assert first.endswith(" DISAGREES"), first
    assert "0 of 1 steps agree with the seeds, 1 disagree (step 1)" in " ".join(out.split())
    kept.free()


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pymalloc-real {prm.__version__}"


@pytest.mark.parametrize("argv, expected", [
    (["--help"], "maps"),
    (["demo", "--help"], "--plot"),
    (["maps", "--help"], "PID"),
])
def test_help(capsys, argv, expected):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: pymalloc-real") and expected in out


@pytest.mark.parametrize("argv, message", [
    (["no-such-command"], "invalid choice"),
    (["demo", "--step", "7"], "invalid choice"),
    (["maps", "not-a-pid"], "invalid int value"),
])
def test_usage_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# ---- maps ------------------------------------------------------------------------------------

def test_maps_of_this_process_groups_annotates_and_totals(capsys):
    block = prm.malloc(MiB)     # large: an mmapped chunk, unless a test raised the threshold
    try:
        ours = prm.chunk_of(block).mmapped
        assert main(["maps"]) == 0
    finally:
        block.free()
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"/proc/{os.getpid()}/maps (")
    groups = [line.split(":")[0] for line in lines if re.match(r"^[a-z]+: \d+ region", line)]
    assert groups[:2] == ["heap", "stack"] and "file" in groups
    assert f"the program break {prm.brk():#x}" in out
    assert "code (text)" in out and "[stack]" in out
    if ours:
        assert "ours: mmapped chunk" in out
    assert any(line.startswith("totals: heap ") for line in lines)


def test_maps_json_matches_procfs(capsys):
    assert main(["maps", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # The break and the stack are live: the interpreter's own glibc malloc (parsing the
    # JSON, say) may move the break and the stack may grow between the report and the
    # checks, so those are compared with what the report itself says.
    assert report["pid"] == os.getpid()
    heap_regions = [r for r in report["regions"] if r["kind"] == "heap"]
    assert any(r["start"] < report["break"] <= r["end"] for r in heap_regions)
    kinds = {r["kind"] for r in report["regions"]}
    assert {"heap", "stack", "file"} <= kinds
    totals = prm.totals_by_kind()
    assert set(report["totals"]) == set(totals)
    assert report["totals"]["stack"] == sum(r["end"] - r["start"] for r in report["regions"]
                                            if r["kind"] == "stack")
    heap = next(r for r in report["regions"] if r["kind"] == "heap" and r["notes"])
    assert any(n.startswith("the program break") for n in heap["notes"])


@pytest.fixture
def sleeper():
    """A `sleep` process past its start-up: Popen returns once exec succeeded, but the
    heap appears only at the program's first malloc; state S means it is in nanosleep."""
    child = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 10
    while _state(child.pid) != "S" and time.monotonic() < deadline:
        time.sleep(0.01)
    yield child
    child.kill()
    child.wait()


def _state(pid):
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_maps_of_another_process(sleeper, capsys):
    pid = sleeper.pid
    executable = os.readlink(f"/proc/{pid}/exe")
    assert main(["maps", str(pid)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"/proc/{pid}/maps (sleep): ")
    assert executable in out and "[stack]" in out and "\ntotals: heap " in out
    assert "ends at the program break (rounded up to a page)" in out
    assert "ours: " not in out, "nothing of another process is ours"
    assert main(["maps", str(pid), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pid"] == pid and report["break"] is None
    assert any(r["path"] == executable for r in report["regions"])
    assert all(r["ours"] == [] for r in report["regions"])


def test_maps_of_a_process_that_does_not_exist(capsys):
    assert main(["maps", "999999999"]) == 2
    assert "maps: error: no process 999999999" in capsys.readouterr().err
