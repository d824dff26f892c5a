"""Every workload on every allocator, in one run (issue 5): `pymalloc-real bench`.

This module owns the benchmark harness: the list of workloads (the C programs of
benchmarks/workloads/, CPython running benchmarks/pyworkload.py, gcc compiling a
generated C file), building the C ones, the plan (each workload, every allocator,
repeated, the allocators interleaved as in compare.py), the checks (exit status 0 and
the same checksum as the other allocators' runs), the summary (median, min-max, ratios
to glibc), the instruction counts of the fast path under callgrind, and the machine's
description; it hands the result to the files written into the output directory:
results.json, results.md and results.png (through bench_report.py, which also owns the
targets). Runs go through ``preload.run``; nothing here prints (``cli.py`` does).

The workload contract (benchmarks/README.md): a C workload takes ``-n OPS -t THREADS
-s SEED`` and ends its stdout with one line ``checksum=<16 hex> ops=<n>`` and
optionally more ``key=value`` pairs; it exits 0. For the two real programs the
checksum is a hash of what they produce: CPython's stdout, gcc's object file.
"""
import collections
import contextlib
import datetime
import hashlib
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import preload
from .compare import Spread
from .compare import interleaved_plan     # the same rotation as `compare`
from .errors import PymallocError
from .preload import GLIBC, LibraryMissing

C_FLAGS = ("-O2", "-g", "-pthread")
RESULT_FILES = ("results.json", "results.md", "results.png")
CHECKSUM = re.compile(r"[0-9a-f]{16}")
REPEAT, QUICK_REPEAT = 5, 3
# Instructions per malloc+free pair: pairs runs under callgrind at these two -n values
# and the difference cancels start-up and exit (quick or not: callgrind counts exactly).
CALLGRIND_OPS = (200_000, 1_000_000)


class BenchError(PymallocError):
    """The benchmark cannot run as asked: an unknown workload, no benchmarks directory,
    no valgrind for --callgrind."""


# ---- the workloads ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """A benchmark program.

    ``kind`` is "c" (a program of benchmarks/workloads/, built into benchmarks/bin/),
    "cpython" (this interpreter running ``source``, a script, with PYTHONMALLOC=malloc)
    or "gcc" (gcc compiling a C file generated with ``ops`` functions). ``ops`` and
    ``quick_ops`` are its -n for a full and a --quick run, ``threads`` its -t (None:
    the --threads setting, for the workloads whose point is several threads).
    """
    name: str
    kind: str
    source: Optional[str]
    ops: int
    quick_ops: int
    threads: Optional[int] = 1
    about: str = ""


# name: (ops, quick ops, threads, what it stresses). Sized so that a full run takes
# about a second on glibc and a quick one about a quarter of that (2-CPU Xeon VM); the
# descriptions are the workloads' own (the comment at the top of each file).
_C_WORKLOADS = {
    "pairs": (100_000_000, 25_000_000, 1, "the malloc/free fast path, LIFO and a ring of 8"),
    "churn": (10_000_000, 2_500_000, 1, "random-size churn over a bounded live set"),
    "larson": (10_000_000, 2_500_000, None, "threads replace slots of a shared array "
                                            "(remote frees)"),
    "prodcons": (10_000_000, 2_500_000, None, "producers allocate, consumers verify and "
                                              "free"),
    "realloc": (6_000_000, 1_500_000, 1, "doubling vectors to 1-16 MiB, strings by 1-64 B"),
    "large": (8_000, 2_000, 1, "64 KiB-8 MiB blocks, around and above the mmap threshold"),
    "frag": (6_291_456, 1_572_864, 1, "fragmentation in phases, and what goes back to the "
                                    "kernel"),
}
_OTHER_C = (1_000_000, 100_000, 1, "")         # a workload not in the table above
PYTHON_SCRIPT = "pyworkload.py"
_CPYTHON = (300, 75, 1, "CPython (PYTHONMALLOC=malloc) on dicts, lists, strings, json")
_GCC = (250, 60, 1, "gcc -O2 compiling a generated C file")
ORDER = tuple(_C_WORKLOADS) + ("cpython", "gcc")


def default_bench_dir():
    """The benchmarks/ directory of the source tree this package runs from (an
    editable install), else ./benchmarks. Raises BenchError when neither exists."""
    package = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(os.path.dirname(package), "benchmarks"),
                      os.path.abspath("benchmarks")):
        if os.path.isdir(os.path.join(candidate, "workloads")):
            return candidate
    raise BenchError("no benchmarks/workloads directory: run from a source checkout of "
                     "pymalloc_real, or give its benchmarks directory (--bench-dir)")


def available_workloads(bench_dir):
    """The workloads of ``bench_dir``: every workloads/<name>.c (the known ones in
    their order, then others by name), cpython when the script is there, gcc when gcc
    is installed."""
    directory = os.path.join(bench_dir, "workloads")
    sources = sorted(name[:-2] for name in os.listdir(directory) if name.endswith(".c")) \
        if os.path.isdir(directory) else []
    names = [n for n in _C_WORKLOADS if n in sources] + [n for n in sources
                                                         if n not in _C_WORKLOADS]
    workloads = [Workload(name, "c", os.path.join(directory, name + ".c"),
                          *_C_WORKLOADS.get(name, _OTHER_C)) for name in names]
    script = os.path.join(bench_dir, PYTHON_SCRIPT)
    if os.path.isfile(script):
        workloads.append(Workload("cpython", "cpython", script, *_CPYTHON))
    if shutil.which("gcc"):
        workloads.append(Workload("gcc", "gcc", None, *_GCC))
    return workloads


def select_workloads(workloads, names):
    """The workloads named (all for None), in the order asked. Raises BenchError for a
    name that is not among them, listing those that are."""
    if names is None:
        return list(workloads)
    by_name = {workload.name: workload for workload in workloads}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise BenchError(f"unknown workload{'s' * (len(unknown) > 1)} {', '.join(unknown)}: "
                         f"the workloads are {', '.join(by_name) or 'none'}")
    return [by_name[name] for name in dict.fromkeys(names)]


class BuildError(PymallocError):
    """A workload did not compile; the message holds the compiler's output."""


def build(workload, bin_dir):
    """The executable of a C workload, compiled with gcc -O2 -g -pthread into
    ``bin_dir`` unless it is newer than its source and the headers beside it. Returns
    its path; raises BuildError with gcc's messages."""
    target = os.path.join(bin_dir, workload.name)
    directory = os.path.dirname(workload.source)
    inputs = [workload.source] + [os.path.join(directory, name) for name in
                                  os.listdir(directory) if name.endswith(".h")]
    newest = max(os.path.getmtime(path) for path in inputs)
    if os.path.exists(target) and os.path.getmtime(target) >= newest:
        return target
    os.makedirs(bin_dir, exist_ok=True)
    # Into a temporary name, then renamed: a failed or interrupted build leaves no
    # half-written program that would look up to date next time.
    partial = f"{target}.{os.getpid()}.tmp"
    command = ["gcc", *C_FLAGS, "-o", partial, workload.source]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise BuildError("gcc is not installed: the C workloads need it") from None
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise BuildError(f"{' '.join(command)} failed:\n{proc.stderr.strip()}")
    os.replace(partial, target)
    return target


def generate_c_program(functions, seed=1):
    """A deterministic C file of ``functions`` functions (structs, loops, switches,
    nested arithmetic) and one function calling them all: work for gcc -O2 that
    grows with ``functions``."""
    rng = random.Random(seed)
    parts = [f"/* Generated by pymalloc-real bench: {functions} functions, seed {seed}. */\n"]
    parts += [_c_function(rng, index) for index in range(functions)]
    calls = "\n".join(f"    total += f{i}(x + {i}, v, n);" for i in range(functions))
    parts.append(f"\nlong entry(long x, const int *v, int n)\n{{\n    long total = 0;\n"
                 f"{calls}\n    return total;\n}}\n")
    return "".join(parts)


def _c_function(rng, index):
    names = ["x", "acc", "v[i]", "i", "r.a", "r.b"]
    cases = "\n".join(f"        case {case}: acc += {_c_expression(rng, names, 3)}; break;"
                      for case in range(rng.randint(3, 9)))
    body = "\n".join(f"    acc = {_c_expression(rng, ['x', 'acc', 'r.a', 'r.b'], 4)};"
                     for _ in range(rng.randint(2, 6)))
    return f"""
struct rec{index} {{ int a; long b; double c; char name[{rng.randint(8, 32)}]; }};

static long f{index}(long x, const int *v, int n)
{{
    struct rec{index} r = {{ {rng.randint(1, 99)}, {rng.randint(1, 999)}L, {rng.random():.6f}, "f{index}" }};
    long acc = x * {rng.randint(2, 50)};
    for (int i = 0; i < n; i++) {{
        switch ((v[i] + acc) & 15) {{
{cases}
        default: acc ^= {rng.randint(1, 1 << 20)};
        }}
        if (acc > 1000003L || acc < -1000003L) acc %= 1000003L;
    }}
{body}
    return acc + r.a + (long)r.c + r.name[0];
}}
"""


def _c_expression(rng, names, depth):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice(names) if rng.random() < 0.7 else str(rng.randint(1, 97))
    left, right = (_c_expression(rng, names, depth - 1) for _ in range(2))
    op = rng.choice("+-*^&|")
    if rng.random() < 0.2:
        return f"(({left}) {op} ({right}) % {rng.randint(2, 13)})"
    return f"(({left}) {op} ({right}))"


# ---- how one workload is run and checked -----------------------------------------------------

@dataclass
class Invocation:
    """A workload ready to run: its command, the variables it needs, and how a finished
    run's checksum, op count and other reported values are read (``read(report)`` ->
    (checksum or None, ops or None, {key: value}, problem or None))."""
    command: List[str]
    env: Dict[str, str]
    read: Callable
    prepare: Callable = lambda: None        # before each run (gcc: remove the old object)


def _invocation(workload, executable, scratch, ops, threads, seed):
    if workload.kind == "c":
        command = [executable, "-n", str(ops), "-t", str(threads), "-s", str(seed)]
        return Invocation(command, {}, _read_result_line)
    if workload.kind == "cpython":
        # -S: no site-packages to scan at start-up; the script needs only the stdlib.
        command = [sys.executable, "-S", workload.source, "-n", str(ops), "-s", str(seed)]
        env = {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}
        return Invocation(command, env,
                          lambda report: _read_digest((report.stdout or "").encode(), ops))
    source, obj = os.path.join(scratch, "generated.c"), os.path.join(scratch, "generated.o")
    with open(source, "w", encoding="ascii") as f:
        f.write(generate_c_program(ops, seed))
    return Invocation(["gcc", "-O2", "-c", source, "-o", obj], {},
                      lambda report: _read_object(obj, ops), prepare=lambda: _remove(obj))


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read_result_line(report):
    """The workload contract's last line: checksum=<16 hex> ops=<n> [key=value ...]."""
    lines = [line for line in (report.stdout or "").splitlines() if line.strip()]
    pairs = dict(token.partition("=")[::2] for token in (lines[-1].split() if lines else []))
    checksum, ops = pairs.pop("checksum", None), pairs.pop("ops", None)
    if checksum is None or not CHECKSUM.fullmatch(checksum):
        tail = lines[-1][:80] if lines else "nothing"
        return None, None, {}, f"no checksum=<16 hex digits> line (last line: {tail!r})"
    if ops is None or not ops.isdigit():
        return checksum, None, pairs, f"no ops=<n> on the result line (got {ops!r})"
    return checksum, int(ops), pairs, None


def _read_digest(data, ops):
    return hashlib.sha256(data).hexdigest()[:16], ops, {}, None


def _read_object(path, ops):
    try:
        with open(path, "rb") as f:
            return _read_digest(f.read(), ops)
    except FileNotFoundError:
        return None, None, {}, f"gcc wrote no object file {path}"


# ---- results ---------------------------------------------------------------------------------

@dataclass
class Run:
    """One run of a workload on an allocator: what wait4 measured (times in seconds,
    peak RSS in bytes), the checksum and op count the run reported, its other
    ``key=value`` pairs, and ``problem``: why the run was rejected (None: it passed)."""
    allocator: str
    exit_status: Optional[int]
    signal: Optional[int]
    wall_time: float
    cpu_time: float
    max_rss: int
    minor_faults: int
    major_faults: int
    checksum: Optional[str]
    ops: Optional[int]
    extras: Dict[str, str] = field(default_factory=dict)
    problem: Optional[str] = None

    @property
    def passed(self):
        return self.problem is None


# What is summarised for each (workload, allocator): RunReport-style attributes of Run.
METRICS = ("wall_time", "cpu_time", "max_rss", "minor_faults", "major_faults")


@dataclass
class Cell:
    """One workload on one allocator: its runs, and over the runs that passed the
    spread of each metric (see METRICS), the ratio of its median to glibc's (None
    without glibc) and the median of each numeric value the workload reported."""
    allocator: str
    runs: List[Run] = field(default_factory=list)
    metrics: Dict[str, Spread] = field(default_factory=dict)
    ratios: Dict[str, Optional[float]] = field(default_factory=dict)
    reported: Dict[str, Spread] = field(default_factory=dict)

    @property
    def failures(self):
        return [f"run {i + 1}: {run.problem}" for i, run in enumerate(self.runs)
                if not run.passed]


@dataclass
class WorkloadResult:
    """A workload's part of the benchmark: the command run (``command``), its -n and
    -t, the checksum the runs were held to (the one most runs agree on, glibc's on a
    tie), ``error`` when it could not run at all (a build failure), and a Cell per
    available allocator."""
    name: str
    kind: str
    about: str
    command: List[str]
    ops: int
    threads: int
    reference: Optional[str] = None
    error: Optional[str] = None
    cells: Dict[str, Cell] = field(default_factory=dict)

    @property
    def failures(self):
        found = [f"{self.name}: {self.error}"] if self.error else []
        for cell in self.cells.values():
            found += [f"{self.name} on {cell.allocator}: {text}" for text in cell.failures]
        return found

    def ratio(self, allocator, metric, to=GLIBC):
        """Median of ``metric`` on ``allocator`` over its median on ``to``, or None."""
        mine, theirs = self.cells.get(allocator), self.cells.get(to)
        if not mine or not theirs or metric not in mine.metrics or metric not in theirs.metrics:
            return None
        base = theirs.metrics[metric].median
        return mine.metrics[metric].median / base if base else None


@dataclass
class Callgrind:
    """Instructions per malloc+free pair, measured with callgrind: the pairs workload
    at two -n values (``ops``) per allocator. ``instructions`` holds each allocator's
    two counts of every instruction, ``in_program`` the two counts of those executed in
    the pairs program itself (its loop, not the allocator). ``per_pair`` is the
    allocator's share: the difference of (instructions - in_program) over the
    difference in pairs; ``per_pair_total`` the same with the loop included. None after
    a failure, described in ``failures``."""
    ops: Tuple[int, int]
    instructions: Dict[str, List[int]] = field(default_factory=dict)
    in_program: Dict[str, List[int]] = field(default_factory=dict)
    per_pair: Dict[str, Optional[float]] = field(default_factory=dict)
    per_pair_total: Dict[str, Optional[float]] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)


@dataclass
class BenchResult:
    """A whole benchmark run: where and when (``machine``, ``date``, ``commit``), the
    settings, the allocators run and those missing (name -> message with the install
    hint), each workload's result, callgrind's counts (None unless asked), the targets
    (bench_report.Target, filled in by run) and the files written (name -> path)."""
    machine: Dict[str, object]
    date: str
    commit: Optional[str]
    settings: Dict[str, object]
    allocators: List[str]
    missing: Dict[str, str]
    workloads: List[WorkloadResult]
    callgrind: Optional[Callgrind] = None
    targets: list = field(default_factory=list)      # bench_report.Target
    files: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    @property
    def failures(self):
        """Every rejected run and every workload that could not run."""
        found = [text for workload in self.workloads for text in workload.failures]
        if self.callgrind:
            found += [f"callgrind: {text}" for text in self.callgrind.failures]
        return found

    @property
    def ok(self):
        return not self.failures

    def as_dict(self):
        """Plain data for results.json."""
        from .bench_report import result_dict     # the report builds on this module
        return result_dict(self)

    def markdown(self):
        """results.md: the tables, the targets, the failures and the machine."""
        from .bench_report import markdown
        return markdown(self)


# ---- running the benchmark -------------------------------------------------------------------

@dataclass
class BenchConfig:
    """What to run. ``workloads``/``allocators``: names (None: every workload
    available); ``repeat``: runs per allocator and workload (None: 5, or 3 with
    ``quick``); ``quick``: each workload's small -n; ``ops``: -n per workload name,
    overriding both; ``threads``: -t of the multi-threaded workloads (None: the CPUs
    this process may use, at least 2); ``bench_dir``: where workloads/ and
    pyworkload.py are (None: ``default_bench_dir()``), ``bin_dir`` where the programs
    are built (None: <bench_dir>/bin), ``out_dir`` where the results go (None:
    <bench_dir>/results); ``callgrind``: also count the fast path's instructions,
    at ``callgrind_ops``; ``timeout``: seconds before a run is killed."""
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
    timeout: Optional[float] = 900.0

    @property
    def runs_each(self):
        return self.repeat or (QUICK_REPEAT if self.quick else REPEAT)


Progress = Callable[[int, int, str], None]


@dataclass
class Plan:
    """What a benchmark will run, settled before anything runs: the settings, the
    directories, the workloads, the allocators that can run and those missing (name ->
    message with the install hint), and the pairs workload when callgrind is asked."""
    config: BenchConfig
    bench_dir: str
    bin_dir: str
    out_dir: str
    workloads: List[Workload]
    allocators: List[str]
    missing: Dict[str, str]
    pairs: Optional[Workload] = None

    @property
    def total_runs(self):
        """The runs to come, callgrind's included (for the progress count)."""
        per_allocator = self.config.runs_each * len(self.workloads) + 2 * bool(self.pairs)
        return len(self.allocators) * per_allocator


def plan(config):
    """The Plan for ``config``. Raises BenchError (or OptionError, for an unknown
    allocator name) when the request cannot be met: an unknown workload, no allocator
    installed, no valgrind for callgrind."""
    if config.runs_each < 1:
        raise BenchError("--repeat must be at least 1")
    bench_dir = os.path.abspath(config.bench_dir or default_bench_dir())
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
                missing, _callgrind_workload(config, bench_dir) if config.callgrind else None)


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
    if plan.pairs:
        try:
            executable = build(plan.pairs, plan.bin_dir)
        except BuildError as error:
            result.callgrind = Callgrind(tuple(config.callgrind_ops), failures=[str(error)])
        else:
            result.callgrind = measure_callgrind(executable, plan.allocators,
                                                 config.callgrind_ops, config.seed,
                                                 config.timeout, counter)
    counter.finish()
    if GLIBC not in plan.allocators:
        result.notes.append("glibc was not run: there are no ratios")
    # The report builds on this module; importing it here, not at the top, avoids a cycle.
    from . import bench_report
    result.targets = bench_report.targets(result)
    result.files = bench_report.write_results(result, plan.out_dir)
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


class _Counter:
    """Counts the runs for the progress callback."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, total, 0

    def step(self, label):
        if self.progress:
            self.progress(self.done, self.total, label)
        self.done += 1

    def skip(self, runs):
        self.done += runs

    def finish(self):
        if self.progress:
            self.progress(self.total, self.total, "")


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


# ---- instructions per pair (callgrind) ---------------------------------------------------------

def _callgrind_workload(config, bench_dir):
    """The pairs workload for --callgrind; BenchError without valgrind or pairs."""
    if shutil.which("valgrind") is None:
        raise BenchError("--callgrind needs valgrind, which is not installed (Debian: "
                         "apt-get install valgrind)")
    found = [w for w in available_workloads(bench_dir) if w.name == "pairs"]
    if not found:
        raise BenchError(f"--callgrind needs the pairs workload: no "
                         f"{os.path.join(bench_dir, 'workloads', 'pairs.c')}")
    low, high = config.callgrind_ops
    if not 0 < low < high:
        raise BenchError("callgrind's two -n values must be positive and increasing")
    return found[0]


def measure_callgrind(executable, allocators, ops=CALLGRIND_OPS, seed=1, timeout=None,
                      counter=None):
    """Instructions per malloc+free pair of the pairs program ``executable`` on each
    allocator: callgrind counts every instruction of a run at each of the two -n values
    ``ops``, and (I2 - I1) / (pairs2 - pairs1) leaves only what the pairs cost, start-up
    and exit cancelled. Counting apart the instructions executed in the program itself
    (the loop around malloc and free) leaves the allocator's. One thread. Returns a
    Callgrind."""
    result = Callgrind(tuple(ops))
    counter = counter or _Counter(None, 0)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-callgrind-") as scratch:
        for index, name in enumerate(allocators):
            counts = []
            for n in ops:
                counter.step(f"callgrind: pairs -n {n} on {name}")
                # By position, not name: an allocator given as a path would otherwise
                # put the profile beside the library.
                count, problem = _callgrind_once(executable, name, n, seed, timeout,
                                                 os.path.join(scratch, f"{index}.{n}"))
                if problem:
                    result.failures.append(f"{name}, -n {n}: {problem}")
                    break
                counts.append(count)
            _per_pair(result, name, counts)
    return result


def _per_pair(result, name, counts):
    """Fill in one allocator's numbers from its (total, in program, pairs) counts."""
    result.instructions[name] = [total for total, _, _ in counts]
    result.in_program[name] = [program for _, program, _ in counts]
    result.per_pair[name] = result.per_pair_total[name] = None
    if len(counts) == 2 and counts[1][2] != counts[0][2]:
        (total1, program1, pairs1), (total2, program2, pairs2) = counts
        result.per_pair_total[name] = (total2 - total1) / (pairs2 - pairs1)
        result.per_pair[name] = ((total2 - program2) - (total1 - program1)) / (pairs2 - pairs1)


def _callgrind_once(executable, allocator, n, seed, timeout, out_file):
    """((instructions, of which in the program, pairs reported), None) for one run of
    pairs under callgrind, or (None, what went wrong)."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
               executable, "-n", str(n), "-t", "1", "-s", str(seed)]
    report = preload.run(command, allocator=allocator, stats=False, timeout=timeout,
                         input=b"")
    if not report.ok:
        tail = (report.stderr or "").strip().splitlines()[-1:] or [""]
        return None, f"exit status {report.shell_status} {tail[0][:160]}".strip()
    _, pairs, _, problem = _read_result_line(report)
    if problem:
        return None, problem
    try:
        by_object = callgrind_by_object(out_file)
    except FileNotFoundError:
        return None, f"callgrind wrote no profile {out_file}"
    program = sum(count for path, count in by_object.items()
                  if path and os.path.realpath(path) == os.path.realpath(executable))
    return (sum(by_object.values()), program, pairs), None


def callgrind_by_object(path):
    """Instructions executed in each object (program or shared library, by path) from
    a callgrind profile: the self cost of every function, summed by its ``ob=``. A
    cost line right after ``calls=`` is a call's inclusive cost, so it is skipped;
    names may be compressed, ``(id) name`` the first time and ``(id)`` after."""
    objects, current, call_cost, totals = {}, None, False, collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                key, _, value = line.rstrip("\n").partition("=")
                match = re.fullmatch(r"\((\d+)\)(?: (.*))?", value)
                if match and match.group(2) is not None:
                    objects[match.group(1)] = match.group(2)
                name = objects.get(match.group(1), value) if match else value
                if key == "ob":
                    current = name
            elif line.startswith("calls="):
                call_cost = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if call_cost:
                    call_cost = False
                    continue
                fields = line.split()
                totals[current] += int(fields[1]) if len(fields) > 1 else 0
    return totals


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
