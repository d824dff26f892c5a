"""Every workload on every allocator, in one run (issue 5): `pymalloc-real bench`.

The harness owns the plan (each workload, every allocator, repeated, the allocators
interleaved as ``preload.compare`` does), the checks (exit status 0 and the same
checksum as the other allocators' runs), the summary (median, min-max, ratios to
glibc) and the machine's description; the workloads are workloads.py's, the
instruction counts callgrind.py's, the records and targets results.py's, the files
files.py's. Runs go through ``preload.run``; nothing here prints (the command line
does).
"""


import collections
import datetime
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .. import preload
from ..preload import GLIBC, LibraryMissing, Spread, interleaved_plan
from . import files, results
from .callgrind import CALLGRIND_OPS, Pattern, callgrind_plan, measure_patterns
from .results import METRICS, BenchResult, Cell, Run, WorkloadResult
from .workloads import (C_FLAGS, BenchError, BuildError, Progress, Workload, _Counter,
                        _invocation, available_workloads, build, default_bench_dir,
                        select_workloads)
from ..reprs import readable


REPEAT, QUICK_REPEAT = 5, 3


# ---- running the benchmark -------------------------------------------------------------------

@readable
@dataclass
class BenchConfig:
    """What to run. ``workloads``/``allocators``: names (None: every workload
    available); ``repeat``: runs per allocator and workload (None: 5, or 3 with
    ``quick``); ``quick``: each workload's small -n; ``ops``: -n per workload name,
    overriding both; ``threads``: -t of the multi-threaded workloads (None: the CPUs
    this process may use, at least 2); ``bench_dir``: where workloads/ and
    pyworkload.py are (None: ``default_bench_dir()``), ``bin_dir`` where the programs
    are built (None: <bench_dir>/bin), ``out_dir`` where the results go (None:
    <bench_dir>/results); ``callgrind``: also count instructions per pair in callgrind's
    three patterns, the cached one (pairs) at ``callgrind_ops``, the others at
    ``callgrind_pattern_ops`` (pattern -> two -n; default: their own); ``timeout``:
    seconds before a run is killed."""
    workloads: Optional[Sequence[str]] = None
    allocators: Sequence[str] = preload.ALLOCATORS
    repeat: Optional[int] = None
    quick: bool = False
    ops: Dict[str, int] = field(default_factory=dict)
    threads: Optional[int] = None
    seed: int = 1
    bench_dir: Optional[str] = None
    bin_dir: Optional[str] = None
    out_dir: Optional[str] = None
    callgrind: bool = False
    callgrind_ops: Tuple[int, int] = CALLGRIND_OPS
    callgrind_pattern_ops: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    timeout: Optional[float] = 900.0

    @property
    def runs_each(self):
        if self.repeat is not None:     # 0 is a mistake plan() refuses, not "default"
            return self.repeat
        return QUICK_REPEAT if self.quick else REPEAT


@readable
@dataclass
class Plan:
    """What a benchmark will run, settled before anything runs: the settings, the
    directories, the workloads, the allocators that can run and those missing (name ->
    message with the install hint), and when callgrind is asked its patterns, each with
    its workload (None: not there, the pattern is not measured)."""
    config: BenchConfig
    bench_dir: str
    bin_dir: str
    out_dir: str
    workloads: List[Workload]
    allocators: List[str]
    missing: Dict[str, str]
    callgrind: List[Tuple[Pattern, Optional[Workload]]] = field(default_factory=list)

    @property
    def total_runs(self):
        """The runs to come, callgrind's included (for the progress count)."""
        per_allocator = self.config.runs_each * len(self.workloads) + 2 * sum(
            workload is not None for _, workload in self.callgrind)
        return len(self.allocators) * per_allocator


def plan(config):
    """The Plan for ``config``. Raises BenchError (or OptionError, for an unknown
    allocator name) when the request cannot be met: an unknown workload, no allocator
    installed, no valgrind for callgrind."""
    if config.runs_each < 1:
        raise BenchError(f"--repeat must be at least 1, not {config.runs_each}")
    if config.threads is not None and config.threads < 1:
        raise BenchError(f"--threads must be at least 1, not {config.threads}")
    bench_dir = os.path.abspath(config.bench_dir or default_bench_dir())
    if not os.path.isdir(os.path.join(bench_dir, "workloads")):
        raise BenchError(f"--bench-dir {config.bench_dir}: no workloads/ directory there; "
                         "give the benchmarks/ directory of a pymalloc_real source tree")
    workloads = select_workloads(available_workloads(bench_dir), config.workloads)
    unknown_ops = set(config.ops) - {w.name for w in workloads}
    if unknown_ops:
        raise BenchError(f"-n given for workloads not run: {', '.join(sorted(unknown_ops))}")
    available, missing = _resolve_allocators(config.allocators)
    if not available:
        raise BenchError("none of the allocators is installed: "
                         + "; ".join(missing.values()))
    return Plan(config, bench_dir, config.bin_dir or os.path.join(bench_dir, "bin"),
                config.out_dir or os.path.join(bench_dir, "results"), workloads, available,
                missing, callgrind_plan(config, bench_dir) if config.callgrind else [])


def run(config, progress: Optional[Progress] = None):
    """Plan and execute the benchmark ``config`` describes; see ``plan`` and
    ``execute``."""
    return execute(plan(config), progress)


def execute(plan, progress: Optional[Progress] = None):
    """Run a Plan and write results.json, results.md and results.png into its output
    directory. ``progress(done, total, label)`` is called before each run and once at
    the end (done == total). Returns a BenchResult whose ``ok`` is False when a run was
    rejected or a workload could not be built."""
    config = plan.config
    counter = _Counter(progress, plan.total_runs)
    result = BenchResult(machine=machine(), date=_now(), commit=git_commit(plan.bench_dir),
                         settings=_settings(config, plan.bench_dir),
                         allocators=plan.allocators, missing=plan.missing, workloads=[])
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-bench-") as scratch:
        for workload in plan.workloads:
            result.workloads.append(_run_workload(workload, config, plan.allocators,
                                                  plan.bin_dir, scratch, counter))
    if plan.callgrind:
        result.callgrind = measure_patterns(plan.callgrind, plan.allocators, plan.bin_dir,
                                            config.seed, config.timeout, counter)
    counter.finish()
    if GLIBC not in plan.allocators:
        result.notes.append("glibc was not run: there are no ratios")
    # The report builds on this module; importing it here, not at the top, avoids a cycle.
    result.targets = results.targets(result)
    result.files = files.write_results(result, plan.out_dir)
    return result


def _resolve_allocators(names):
    """(names of the allocators that can run, {missing name: message with its hint})."""
    available, missing = [], {}
    for name in dict.fromkeys(names):
        try:
            preload.resolve(name)
        except LibraryMissing as error:
            missing[name] = str(error)
        else:
            available.append(name)
    return available, missing


def _run_workload(workload, config, allocators, bin_dir, scratch, counter):
    ops = config.ops.get(workload.name, workload.quick_ops if config.quick else workload.ops)
    threads = workload.threads or config.threads or max(2, len(os.sched_getaffinity(0)))
    result = WorkloadResult(workload.name, workload.kind, workload.about, [], ops, threads)
    try:
        executable = build(workload, bin_dir) if workload.kind == "c" else None
    except BuildError as error:
        result.error = str(error)
        counter.skip(len(allocators) * config.runs_each)
        return result
    invocation = _invocation(workload, executable, scratch, ops, threads, config.seed)
    result.command = invocation.command
    env = dict(os.environ, **invocation.env)
    result.cells = {name: Cell(name) for name in allocators}
    for round_, (name, _) in enumerate(interleaved_plan(allocators, 0, config.runs_each)):
        counter.step(f"{workload.name} on {name} "
                     f"(run {round_ // len(allocators) + 1}/{config.runs_each})")
        invocation.prepare()
        report = preload.run(invocation.command, allocator=name, env=env, stats=False,
                             timeout=config.timeout, input=b"")
        result.cells[name].runs.append(_run_record(report, invocation))
    _check_checksums(result)
    _summarise(result)
    return result


def _run_record(report, invocation):
    """A Run from preload's report: the numbers, what the run printed or wrote, and
    the first reason to reject it (the checksum check comes later, across allocators)."""
    checksum, ops, extras, problem = invocation.read(report)
    if report.signal is not None:
        problem = f"killed by {report.signal_name}" + (" (timeout)" if report.timed_out else "")
    elif report.exit_status != 0:
        tail = (report.stderr or "").strip().splitlines()[-1:]
        problem = f"exit status {report.exit_status}" + (f" ({tail[0][:160]})" if tail else "")
    return Run(report.allocator, report.exit_status, report.signal, report.wall_time,
               report.cpu_time, report.max_rss, report.minor_faults, report.major_faults,
               checksum, ops, extras, problem)


def _check_checksums(result):
    """Hold every run to the checksum most passing runs agree on (glibc's on a tie):
    the workloads are deterministic, so a differing run computed something else."""
    runs = [run for cell in result.cells.values() for run in cell.runs if run.passed]
    counts = collections.Counter(run.checksum for run in runs)
    if not counts:
        return
    top = max(counts.values())
    tied = [checksum for checksum, count in counts.items() if count == top]
    glibc = [run.checksum for run in runs if run.allocator == GLIBC and run.checksum in tied]
    result.reference = glibc[0] if glibc else tied[0]
    others = sorted({run.allocator for run in runs if run.checksum == result.reference})
    for run in runs:
        if run.checksum != result.reference:
            run.problem = (f"checksum {run.checksum} differs from {result.reference} "
                           f"(the checksum of {', '.join(others)})")


def _summarise(result):
    for cell in result.cells.values():
        passed = [run for run in cell.runs if run.passed]
        if not passed:
            continue
        cell.metrics = {name: Spread.of([getattr(run, name) for run in passed])
                        for name in METRICS}
        for key in passed[0].extras:
            values = [_number(run.extras.get(key)) for run in passed]
            if all(value is not None for value in values):
                cell.reported[key] = Spread.of(values)
    for cell in result.cells.values():
        cell.ratios = {name: result.ratio(cell.allocator, name) for name in cell.metrics}


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# ---- where and when ------------------------------------------------------------------------------

def machine():
    """The machine the numbers come from: CPU model, CPUs (online and usable by this
    process), kernel, glibc, Python, gcc and valgrind versions."""
    return {"cpu": cpu_model(), "cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)),
            "kernel": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(),
            "glibc": os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "gcc": _version(["gcc", "-dumpfullversion"]),
            "valgrind": _version(["valgrind", "--version"])}


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") \
                        and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(command):
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def git_commit(directory):
    """The commit checked out where ``directory`` is, "+ changes" when the tree has
    uncommitted changes, or None outside git."""
    commit = _version(["git", "-C", directory, "rev-parse", "HEAD"])
    if commit is None:
        return None
    status = _version(["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"])
    return commit + (" + uncommitted changes" if status else "")


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _settings(config, bench_dir):
    return {"repeat": config.runs_each, "quick": config.quick, "seed": config.seed,
            "ops_overrides": dict(config.ops), "bench_dir": bench_dir,
            "allocators_asked": list(config.allocators), "timeout": config.timeout,
            "callgrind_ops": list(config.callgrind_ops) if config.callgrind else None,
            "callgrind_pattern_ops": {name: list(ops) for name, ops in
                                      config.callgrind_pattern_ops.items()}
            if config.callgrind else None,
            "compiler_flags": list(C_FLAGS), "libraries": _libraries(config.allocators)}


def _libraries(names):
    """Each allocator's library and, for the peers, the Debian package's version."""
    found = {}
    for name in names:
        try:
            library = preload.resolve(name).library
        except LibraryMissing:
            continue
        package = preload.PEERS.get(name)
        version = _version(["dpkg-query", "-W", "-f=${Version}", package.package]) \
            if package else None
        found[name] = {"library": library, "version": version}
    return found
