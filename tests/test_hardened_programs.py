"""Hardened mode on the programs the default build is held to (issue 16, "Done when" 3):
the misuse corpus, the stress and fork programs, every benchmark workload's checksum,
and real programs (sort, gcc, a Python workload), each run with hardened=1 under the
LD_PRELOAD library. Hardened mode must raise no false alarm on any of them (its
quarantine, canary, guard pages and fault handler stay silent), still stop every misuse
with a named report, and give the same results as glibc. CPython's regression tests in
hardened mode are in test_memory_errors.py.
"""
import signal
import subprocess
import sys

import pytest

from pymalloc_real import preload
from pymalloc_real.bench import workloads as bench_workloads
from test_misuse_corpus import EXPECTED as MISUSES, _run as _run_misuse, corpus  # noqa: F401
from test_preload_real import c_source, python_workload
from test_preload_programs import (CHILD_TIMEOUT, FORK_THREADS, PINNED, _assert_on_library,  # noqa: F401
                                   _env, _run, _stress_argv, library, programs)

HARDENED = "hardened=1"


def _hardened_env(library, options=""):
    return _env(library, PYMALLOC_REAL_OPTIONS=",".join(o for o in (options, HARDENED) if o))


# ---- the misuse corpus -----------------------------------------------------------------------

# Programs that lay their blocks out by the default build's chunk sizes and say so (exit
# 2 with their reason) when the layout is not there: hardened mode's canary puts 16 bytes
# after every block. The same overflow in hardened mode is the memory-error corpus's
# overflow_* programs, which its canary catches.
LAYOUT_DEPENDENT = {"overflow_next_size": "no two neighbouring blocks found"}


@pytest.mark.parametrize("name", sorted(MISUSES))
def test_every_misuse_is_still_stopped_with_a_named_report(corpus, library, name):  # noqa: F811
    """Hardened mode may name a misuse by another check than the default build (its canary
    or quarantine sees it first), or only when the block leaves the quarantine at exit
    (after the program's "misuse went unnoticed"), but it names it: one report line, then
    SIGABRT (or the signal of a named trap); a misuse that gets a documented error still
    exits 0."""
    outcome, _check, options = MISUSES[name]
    proc = _run_misuse(corpus[name], library, ",".join(o for o in (options, HARDENED) if o))
    if outcome == "exit 0":
        assert proc.returncode == 0, (name, proc.returncode, proc.stderr)
        return
    if name in LAYOUT_DEPENDENT:
        assert proc.returncode == 2 and proc.stderr.strip() == LAYOUT_DEPENDENT[name], proc.stderr
        return
    lines = proc.stderr.splitlines()
    if lines[:1] == ["misuse went unnoticed"]:       # found at exit, in the quarantine
        lines = lines[1:]
    assert proc.returncode in (-signal.SIGABRT, -signal.SIGSEGV, -signal.SIGBUS), (
        name, proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("pymalloc_real: "), (name, proc.stderr)


# ---- stress and fork ---------------------------------------------------------------------------

@pytest.mark.parametrize("threads, threshold", [(2, "dynamic"), (4, PINNED)])
def test_stress_in_hardened_mode(programs, library, threads, threshold):  # noqa: F811
    run = _run(_stress_argv(programs, threads, threshold), _hardened_env(library), timeout=120)
    _assert_on_library(run, "stress", library)
    assert run.stderr == "", run.explain()


def test_fork_while_threads_allocate_in_hardened_mode(programs, library):  # noqa: F811
    forks = 60
    argv = [programs["fork_threads"], str(FORK_THREADS), str(forks), str(CHILD_TIMEOUT), "1"]
    run = _run(argv, _hardened_env(library), timeout=4 * CHILD_TIMEOUT + 120)
    _assert_on_library(run, "fork_threads", library)
    assert run.counts("fork_threads")["children-ok"] == str(forks), run.explain()


def test_fork_from_a_signal_handler_in_hardened_mode(programs, library):  # noqa: F811
    """The quarantine's lock is one more lock the fork handlers take, release and reset."""
    argv = [programs["fork_signal"], "1", "2000", str(CHILD_TIMEOUT), "1"]
    run = _run(argv, _hardened_env(library), timeout=1 + 2 * CHILD_TIMEOUT + 120)
    _assert_on_library(run, "fork_signal", library)
    argv = [programs["fork_nested"], "timer", "2000", "200", str(CHILD_TIMEOUT), "1"]
    run = _run(argv, _hardened_env(library), timeout=CHILD_TIMEOUT + 120)
    _assert_on_library(run, "fork_nested", library)


# ---- benchmark checksums -------------------------------------------------------------------------

# -n per workload: enough to reach each workload's phases (large's mappings, frag's
# phases) in a few seconds in hardened mode, which has no thread cache.
_SMALL_OPS = {"pairs": 200_000, "churn": 50_000, "larson": 50_000, "prodcons": 50_000,
              "realloc": 50_000, "large": 300, "frag": 65_536, "remote64": 50_000,
              "mixed": 50_000, "page_pairs": 100_000}


@pytest.fixture(scope="module")
def workload_binaries(tmp_path_factory):
    directory = bench_workloads.default_bench_dir()
    found = [w for w in bench_workloads.available_workloads(directory) if w.kind == "c"]
    bin_dir = str(tmp_path_factory.mktemp("hardened-workloads"))
    return {w.name: (bench_workloads.build(w, bin_dir), w.threads or 2) for w in found}


def _checksum(argv, env):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (argv, proc.returncode, proc.stderr[-2000:])
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("checksum="), proc.stdout[-500:]
    return last.split()[0], proc.stderr


def test_every_benchmark_workload_gives_glibc_s_checksum_in_hardened_mode(workload_binaries, library):  # noqa: F811
    assert set(_SMALL_OPS) <= set(workload_binaries), sorted(workload_binaries)
    for name, (binary, threads) in sorted(workload_binaries.items()):
        argv = [binary, "-n", str(_SMALL_OPS.get(name, 50_000)), "-t", str(threads), "-s", "3"]
        theirs, _ = _checksum(argv, _env())
        ours, stderr = _checksum(argv, _hardened_env(library))
        assert ours == theirs and stderr == "", (name, ours, theirs, stderr)


# ---- real programs -------------------------------------------------------------------------------

def _hardened_and_glibc(cmd, **kwargs):
    ours = preload.run(cmd, allocator="pymalloc_real", options={"hardened": 1}, timeout=300, **kwargs)
    theirs = preload.run(cmd, allocator="glibc", timeout=300, **kwargs)
    assert ours.exit_status == 0, ours.stderr[-2000:]
    assert theirs.exit_status == 0, theirs.stderr[-2000:]
    assert "pymalloc_real:" not in ours.stderr, ours.stderr[-2000:]
    return ours, theirs


def test_sort_gcc_and_python_give_glibc_s_results_in_hardened_mode(tmp_path):
    data = tmp_path / "lines.txt"
    lines = [f"{(i * 2654435761) % 1000003:07d}-{i}" for i in range(100_000)]
    data.write_text("\n".join(lines) + "\n")
    ours, theirs = _hardened_and_glibc(["sort", "--parallel=2", "-S", "16M", str(data)])
    assert ours.stdout == theirs.stdout and ours.stdout.splitlines() == sorted(lines)

    source = tmp_path / "prog.c"
    source.write_text(c_source(200))
    objects = [tmp_path / "ours.o", tmp_path / "glibc.o"]
    for allocator, target in zip(("pymalloc_real", "glibc"), objects):
        report = preload.run(["gcc", "-O2", "-c", str(source), "-o", str(target)],
                             allocator=allocator, timeout=300,
                             **({"options": {"hardened": 1}} if allocator == "pymalloc_real" else {}))
        assert report.exit_status == 0, report.stderr[-2000:]
    assert objects[0].read_bytes() == objects[1].read_bytes()

    ours, theirs = _hardened_and_glibc([sys.executable, "-c", python_workload(50_000)],
                                       env={"PYTHONMALLOC": "malloc"})
    assert ours.stdout == theirs.stdout and ours.stdout.strip()
