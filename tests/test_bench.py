"""The benchmark harness (issue 5): `pymalloc-real bench` and pymalloc_real.bench.

Everything runs on tiny workloads written here into a temporary benchmarks directory
(C programs that follow the workload contract, one that lies about its checksum under
LD_PRELOAD, one that fails under it, one that does not compile, a pairs loop for
callgrind) plus the real programs (CPython on benchmarks/pyworkload.py, gcc on a
generated file) at a few ops. The runs use glibc and our library; cases that need our
library are skipped only while `library_path()` raises FileNotFoundError. Nothing
here asserts on a time: only on structure, checksums, exit codes, instruction counts
being plausible, and the files.
"""
import json
import os
import re
import shutil
import struct
import time

import pytest

from pymalloc_real import bench, preload
from pymalloc_real.bench import results as bench_report
from pymalloc_real.cli import main
from pymalloc_real.preload import GLIBC, OURS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ours_or_reason():
    try:
        preload.library_path()
    except FileNotFoundError as error:
        return f"our preload library is not built (library_path() raised): {error}"
    return None


NO_OURS = _ours_or_reason()
needs_ours = pytest.mark.skipif(NO_OURS is not None, reason=NO_OURS or "")
ALLOCATORS = [GLIBC] if NO_OURS else [GLIBC, OURS]

FAKE_HEADER = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static long opt_n = 1000, opt_t = 1, opt_s = 1;
static void parse(int argc, char **argv) {
    int c;
    while ((c = getopt(argc, argv, "n:t:s:")) != -1) {
        if (c == 'n') opt_n = atol(optarg);
        else if (c == 't') opt_t = atol(optarg);
        else if (c == 's') opt_s = atol(optarg);
        else exit(2);
    }
}
/* malloc/free pairs of varied sizes; the pointer escapes so gcc keeps every call. */
static uint64_t churn(long n) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)opt_s;
    for (long i = 0; i < n; i++) {
        size_t size = 16 + (size_t)(i * 37) % 4000;
        unsigned char *p = malloc(size);
        p[0] = (unsigned char)i; p[size - 1] = 7;
        __asm__ volatile("" : : "g"(p) : "memory");
        h = (h ^ p[0] ^ p[size - 1] ^ size) * 1099511628211ULL;
        free(p);
    }
    return h;
}
static uint64_t text_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    while (s && *s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}
"""

FAKE_WORKLOADS = {
    # A correct workload, with one more key=value pair on its result line.
    "tiny": r"""
int main(int argc, char **argv) {
    parse(argc, argv);
    printf("starting\nchecksum=%016llx ops=%ld blocks=%ld\n",
           (unsigned long long)churn(opt_n), opt_n, opt_n * 2);
    return 0;
}""",
    # Computes something else when an allocator is preloaded: its checksum differs.
    "liar": r"""
int main(int argc, char **argv) {
    parse(argc, argv);
    uint64_t h = churn(opt_n) ^ text_hash(getenv("LD_PRELOAD"));
    printf("checksum=%016llx ops=%ld\n", (unsigned long long)h, opt_n);
    return 0;
}""",
    # The right checksum, but exit status 3 when an allocator is preloaded.
    "fails": r"""
int main(int argc, char **argv) {
    parse(argc, argv);
    printf("checksum=%016llx ops=%ld\n", (unsigned long long)churn(opt_n), opt_n);
    if (getenv("LD_PRELOAD")) { fprintf(stderr, "fails: preloaded\n"); return 3; }
    return 0;
}""",
    "broken": "int main(void) { return missing_function(; }",
    # The fast-path loop callgrind measures: ops = malloc+free pairs.
    "pairs": r"""
int main(int argc, char **argv) {
    parse(argc, argv);
    uint64_t h = 0;
    for (long i = 0; i < opt_n; i++) {
        unsigned char *p = malloc(64);
        p[0] = (unsigned char)i;
        __asm__ volatile("" : : "g"(p) : "memory");
        h += p[0];
        free(p);
    }
    printf("checksum=%016llx ops=%ld\n", (unsigned long long)h, opt_n);
    return 0;
}""",
}

TINY_OPS = {"tiny": 2000, "liar": 2000, "fails": 2000, "pairs": 2000, "cpython": 2, "gcc": 4}


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory):
    """A benchmarks directory: the fake workloads, a shared header, and the real
    pyworkload.py (the cpython workload)."""
    directory = tmp_path_factory.mktemp("benchmarks")
    workloads = directory / "workloads"
    workloads.mkdir()
    (workloads / "fake.h").write_text(FAKE_HEADER)
    for name, body in FAKE_WORKLOADS.items():
        (workloads / f"{name}.c").write_text('#include "fake.h"\n' + body)
    shutil.copy(os.path.join(ROOT, "benchmarks", bench.PYTHON_SCRIPT), directory)
    return str(directory)


def _config(bench_dir, out, workloads, **settings):
    settings.setdefault("allocators", ALLOCATORS)
    settings.setdefault("repeat", 2)
    return bench.BenchConfig(workloads=workloads, bench_dir=bench_dir, out_dir=str(out),
                             ops={name: TINY_OPS[name] for name in workloads}, **settings)


def _png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", header[16:24])


# ---- a whole run --------------------------------------------------------------------------------

def test_run_writes_results_for_c_workloads_and_real_programs(bench_dir, tmp_path):
    seen = []
    result = bench.run(_config(bench_dir, tmp_path, ["tiny", "cpython", "gcc"]),
                       progress=lambda done, total, label: seen.append((done, total, label)))
    assert result.ok, result.failures
    assert [done for done, _, _ in seen] == list(range(len(seen)))
    assert seen[-1][:2] == (len(seen) - 1, len(seen) - 1) == (6 * len(ALLOCATORS),) * 2

    with open(result.files["results.json"], encoding="utf-8") as f:
        data = json.load(f)
    assert data["ok"] is True and data["failures"] == [] and data["missing"] == {}
    assert data["allocators"] == ALLOCATORS
    for key in ("cpu", "cpus", "kernel", "glibc", "python"):
        assert data["machine"][key], key
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", data["date"])
    assert data["commit"] is None or re.match(r"[0-9a-f]{40}", data["commit"])
    assert data["settings"]["repeat"] == 2
    assert [w["name"] for w in data["workloads"]] == ["tiny", "cpython", "gcc"]
    for workload in data["workloads"]:
        assert re.fullmatch(r"[0-9a-f]{16}", workload["reference_checksum"])
        assert workload["ops"] == TINY_OPS[workload["name"]]
        assert set(workload["allocators"]) == set(ALLOCATORS)
        for name, cell in workload["allocators"].items():
            assert len(cell["runs"]) == 2 and cell["failures"] == []
            assert all(run["checksum"] == workload["reference_checksum"]
                       and run["exit_status"] == 0 for run in cell["runs"])
            for metric in ("wall_time", "cpu_time", "max_rss", "minor_faults"):
                spread = cell["metrics"][metric]
                assert spread["min"] <= spread["median"] <= spread["max"]
            assert cell["metrics"]["max_rss"]["min"] > 0
            assert set(cell["ratios_to_glibc"]) >= {"wall_time", "max_rss"}
        assert workload["allocators"][GLIBC]["ratios_to_glibc"]["wall_time"] == 1.0
    tiny = data["workloads"][0]
    assert tiny["command"][1:] == ["-n", "2000", "-t", "1", "-s", "1"]
    assert tiny["allocators"][GLIBC]["reported"]["blocks"]["median"] == 4000
    gcc = data["workloads"][2]
    assert gcc["command"][:3] == ["gcc", "-O2", "-c"]

    assert [t["verdict"] for t in data["targets"]][3] == "not measured"   # no --callgrind
    assert all(t["verdict"] in ("met", "missed", "not measured") for t in data["targets"])
    assert len(data["target_rows"]) == 3

    with open(result.files["results.md"], encoding="utf-8") as f:
        text = f.read()
    for heading in ("## Wall time", "## Peak RSS", "## Minor page faults", "## Targets",
                    "## Checks", "## Machine", "| tiny |", "| cpython |", "| gcc |"):
        assert heading in text, heading
    assert text == result.markdown()


def test_the_chart_is_a_real_picture(bench_dir, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread
    result = bench.run(_config(bench_dir, tmp_path, ["tiny"], repeat=1))
    path = result.files["results.png"]
    width, height = _png_size(path)
    assert width >= 800 and height >= 500
    pixels = imread(path)
    assert pixels.std() > 0.05                  # not one flat colour
    colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7].tolist()}
    assert len(colours) > 20                    # bars, text and axes, not a blank canvas


def test_generated_c_file_is_deterministic():
    assert bench.generate_c_program(30, seed=5) == bench.generate_c_program(30, seed=5)
    assert bench.generate_c_program(30, seed=5) != bench.generate_c_program(30, seed=6)
    assert bench.generate_c_program(30).count("static long f") == 30


# ---- the checks --------------------------------------------------------------------------------

@needs_ours
def test_a_differing_checksum_or_a_failed_exit_is_rejected(bench_dir, tmp_path, capsys):
    argv = ["bench", "--bench-dir", bench_dir, "--out", str(tmp_path), "--repeat", "2",
            "--workloads", "tiny,liar,fails", "--allocators", f"{GLIBC},{OURS}", "--json"]
    for name in ("tiny", "liar", "fails"):
        argv += ["--ops", f"{name}={TINY_OPS[name]}"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["ok"] is False
    assert "rejected" in err
    tiny, liar, fails = data["workloads"]
    assert tiny["failures"] == []
    # liar: glibc and ours each agree with themselves, 2 runs to 2; glibc wins the tie.
    glibc_runs = liar["allocators"][GLIBC]["runs"]
    assert liar["reference_checksum"] == glibc_runs[0]["checksum"]
    assert all(run["problem"] is None for run in glibc_runs)
    for run in liar["allocators"][OURS]["runs"]:
        assert run["exit_status"] == 0
        assert run["problem"].startswith(f"checksum {run['checksum']} differs from "
                                         f"{liar['reference_checksum']}")
    assert liar["allocators"][OURS]["metrics"] == {}        # rejected runs are not counted
    assert "wall_time" in liar["allocators"][GLIBC]["metrics"]
    for run in fails["allocators"][OURS]["runs"]:
        assert run["problem"] == "exit status 3 (fails: preloaded)"
    assert len(data["failures"]) == 4
    with open(os.path.join(tmp_path, "results.md"), encoding="utf-8") as f:
        text = f.read()
    assert "**4 rejected**" in text and "| liar |" in text and "FAILED" in text


def test_the_checksum_most_runs_agree_on_is_the_reference():
    def runs(allocator, checksum, count=2):
        return [bench.Run(allocator, 0, None, 0.1, 0.1, 1 << 20, 100, 0, checksum, 10)
                for _ in range(count)]

    result = bench.WorkloadResult("w", "c", "", [], 10, 1)
    for name, checksum in ((GLIBC, "a" * 16), (OURS, "b" * 16), ("jemalloc", "b" * 16)):
        result.cells[name] = bench.Cell(name, runs(name, checksum))
    bench.harness._check_checksums(result)
    assert result.reference == "b" * 16        # glibc is outvoted: it is the odd one out
    assert [run.passed for run in result.cells[GLIBC].runs] == [False, False]
    assert all(run.passed for run in result.cells[OURS].runs)


def test_a_workload_that_does_not_build_fails_the_run(bench_dir, tmp_path, capsys):
    argv = ["bench", "--bench-dir", bench_dir, "--out", str(tmp_path), "--repeat", "1",
            "--workloads", "broken,tiny", "--allocators", GLIBC, "--ops", "tiny=500"]
    assert main(argv) == 1
    out, _ = capsys.readouterr()
    assert "| broken | not built |" in out
    assert re.search(r"- broken: gcc .* failed:\n\n  ```\n(  .*\n)*  .*error", out)
    assert "| tiny | 0." in out


def test_build_only_when_a_source_or_header_is_newer(bench_dir, tmp_path):
    workload = next(w for w in bench.available_workloads(bench_dir) if w.name == "tiny")
    program = bench.build(workload, str(tmp_path))
    built = os.path.getmtime(program)
    old = built - 100
    os.utime(program, (old, old))
    for source in (workload.source, os.path.join(os.path.dirname(workload.source), "fake.h")):
        os.utime(source, (old - 10, old - 10))
    assert bench.build(workload, str(tmp_path)) == program
    assert os.path.getmtime(program) == old                 # up to date: not rebuilt
    header = os.path.join(os.path.dirname(workload.source), "fake.h")
    os.utime(header, (time.time(), time.time()))
    bench.build(workload, str(tmp_path))
    assert os.path.getmtime(program) > old                  # a newer header: rebuilt


# ---- what is missing ----------------------------------------------------------------------------

def test_missing_allocators_are_named_with_make_peers(bench_dir, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.setattr(preload.libraries, "library_directories", lambda: ("/nonexistent-lib-dir",))
    argv = ["bench", "--bench-dir", bench_dir, "--out", str(tmp_path), "--repeat", "1",
            "--workloads", "tiny", "--allocators", f"{GLIBC},jemalloc,tcmalloc",
            "--ops", "tiny=500"]
    assert main(argv) == 0                                  # the others still ran
    out, err = capsys.readouterr()
    for name in ("jemalloc", "tcmalloc"):
        line = next(line for line in err.splitlines() if f"{name} skipped" in line)
        assert "make peers" in line and preload.PEERS[name].package in line
    assert "**Missing allocators**" in out and "make peers" in out
    with open(os.path.join(tmp_path, "results.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert data["allocators"] == [GLIBC]
    assert set(data["missing"]) == {"jemalloc", "tcmalloc"}


def test_unknown_workload_is_an_error(bench_dir, tmp_path, capsys):
    assert main(["bench", "--bench-dir", bench_dir, "--out", str(tmp_path),
                 "--workloads", "tiny,nosuch"]) == 2
    err = capsys.readouterr().err
    assert "unknown workload nosuch" in err and "tiny" in err
    assert not os.path.exists(os.path.join(tmp_path, "results.json"))


# ---- callgrind ----------------------------------------------------------------------------------

def test_callgrind_without_valgrind_is_a_clear_error(bench_dir, tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "valgrind" else
                        real_which(name, *a, **k))
    with pytest.raises(bench.BenchError, match="--callgrind needs valgrind"):
        bench.plan(_config(bench_dir, tmp_path, ["tiny"], callgrind=True))


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_instructions_per_pair(bench_dir, tmp_path):
    result = bench.run(_config(bench_dir, tmp_path, ["pairs"], repeat=1, callgrind=True,
                               callgrind_ops=(2000, 12000)))
    assert result.ok, result.failures
    counts = result.callgrind
    for name in ALLOCATORS:
        low, high = counts.instructions[name]
        assert high > low
        # malloc(64) + free in any allocator: tens to hundreds of instructions; the loop
        # around them (a store, a load, an add, the branch) is counted apart.
        assert 10 < counts.per_pair[name] < 1000
        assert 0 < counts.per_pair_total[name] - counts.per_pair[name] < 50
    fast_path = result.targets[3]
    assert fast_path.met is (None if NO_OURS else
                             bench_report.meets(counts.per_pair[OURS], 70, digits=1))
    with open(result.files["results.json"], encoding="utf-8") as f:
        assert json.load(f)["callgrind"]["per_pair"] == counts.per_pair
    assert "Instructions per malloc+free pair" in result.markdown()


# ---- issue 14: the speed patterns ----------------------------------------------------------------

REAL_BENCH = os.path.join(ROOT, "benchmarks")
SPEED_WORKLOADS = {"remote64": 2, "mixed": 1, "page_pairs": 1}     # name: its -t in bench


def _real_workload(name):
    return next(w for w in bench.available_workloads(REAL_BENCH) if w.name == name)


def _result_line(program, allocator, *args):
    report = preload.run([program, *args], allocator=allocator, stats=False, timeout=120,
                         input=b"")
    assert report.exit_status == 0, (allocator, report.stderr)
    line = report.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"checksum=[0-9a-f]{16} ops=\d+", line), line
    return line


def test_the_speed_workloads_are_in_the_table():
    assert bench.ORDER[-5:] == ("remote64", "mixed", "page_pairs", "cpython", "gcc")
    for name, threads in SPEED_WORKLOADS.items():
        workload = _real_workload(name)
        assert workload.threads == threads and workload.about
        assert workload.ops == 4 * workload.quick_ops


@pytest.mark.parametrize("name", sorted(SPEED_WORKLOADS))
def test_a_speed_workload_gives_the_same_checksum_on_glibc_and_ours(name, tmp_path):
    program = bench.build(_real_workload(name), str(tmp_path))
    threads = SPEED_WORKLOADS[name]
    args = ["-n", "20001", "-t", str(2 * threads), "-s", "3"]
    lines = {allocator: _result_line(program, allocator, *args) for allocator in ALLOCATORS}
    assert lines[GLIBC].endswith(" ops=20001")
    assert len(set(lines.values())) == 1, lines
    assert _result_line(program, GLIBC, *args) == lines[GLIBC]          # deterministic
    assert _result_line(program, GLIBC, "-n", "20001", "-s", "4") != lines[GLIBC]
    bad = preload.run([program, "-t", "3" if name == "remote64" else "0"], stats=False,
                      timeout=60, input=b"")
    assert bad.exit_status == 2 and bad.stdout == ""


def test_a_missing_pattern_workload_is_not_measured(bench_dir, tmp_path):
    config = _config(bench_dir, tmp_path, ["pairs"], allocators=[GLIBC], callgrind=True,
                     callgrind_ops=(2000, 12000))
    planned = bench.callgrind_plan(config, bench_dir)
    assert [(p.name, p.workload) for p, _ in planned] == [
        ("cached", "pairs"), ("4 KiB", "page_pairs"), ("mixed", "mixed")]
    assert [w is None for _, w in planned] == [False, True, True]
    with pytest.raises(bench.BenchError, match="no callgrind pattern nosuch"):
        bench.callgrind_plan(_config(bench_dir, tmp_path, ["pairs"], callgrind=True,
                                     callgrind_pattern_ops={"nosuch": (1, 2)}), bench_dir)
    result = bench.BenchResult({}, "", None, {}, [GLIBC], {}, [],
                               callgrind=bench.measure_patterns(planned, [], str(tmp_path)))
    assert result.ok
    assert result.callgrind.not_measured == {"4 KiB": "no workloads/page_pairs.c",
                                             "mixed": "no workloads/mixed.c"}
    assert result.callgrind.patterns == {"cached": {}, "4 KiB": {}, "mixed": {}}
    speed = bench.targets(result)[5:]
    assert [t.verdict for t in speed] == ["not measured"] * 3
    assert "| mixed | mixed | 200,000 and 1,000,000 | not measured (no workloads/mixed.c) |" \
        in bench.callgrind.markdown_lines(result.callgrind, [GLIBC])


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_each_pattern(tmp_path):
    small = (2000, 12000)
    result = bench.run(bench.BenchConfig(
        workloads=["page_pairs"], allocators=ALLOCATORS, repeat=1, ops={"page_pairs": 2000},
        bench_dir=REAL_BENCH, bin_dir=str(tmp_path / "bin"), out_dir=str(tmp_path / "out"),
        callgrind=True, callgrind_ops=small,
        callgrind_pattern_ops={"4 KiB": small, "mixed": small}))
    assert result.ok, result.failures
    counts = result.callgrind
    assert list(counts.patterns) == ["cached", "4 KiB", "mixed"]
    assert counts.not_measured == {}
    assert counts.patterns["cached"] == counts.per_pair        # the same numbers as before
    for pattern, per_allocator in counts.patterns.items():
        assert set(per_allocator) == set(ALLOCATORS)
        for name, value in per_allocator.items():
            assert 10 < value < 2000, (pattern, name, value)
            assert counts.counts[pattern].ops == small
    speed = result.targets[5:]
    assert [t.goal.split(":")[0] for t in speed] == ["issue 14"] * 3
    assert [t.goal.split()[2] for t in speed] == ["cached", "4", "mixed"]
    assert all(t.met is not None for t in speed) is (NO_OURS is None)
    with open(result.files["results.json"], encoding="utf-8") as f:
        data = json.load(f)["callgrind"]
    assert data["patterns"] == counts.patterns and data["per_pair"] == counts.per_pair
    text = result.markdown()
    for pattern, workload in (("cached", "pairs"), ("4 KiB", "page_pairs"), ("mixed", "mixed")):
        assert re.search(rf"^\| {pattern} \| {workload} \| 2,000 and 12,000 \|( [0-9.*]+ \|)+$",
                         text, re.M), pattern
