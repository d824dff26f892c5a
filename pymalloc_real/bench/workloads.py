"""The workloads of `pymalloc-real bench` and their contract: the C programs of
benchmarks/workloads/, CPython running benchmarks/pyworkload.py and gcc compiling a
generated C file; building the C ones; how one run is invoked and its result line read;
and the progress counter the harness and callgrind share.

The contract (benchmarks/README.md): a C workload takes ``-n OPS -t THREADS -s SEED``
and ends its stdout with one line ``checksum=<16 hex> ops=<n>`` and optionally more
``key=value`` pairs; it exits 0. For the two real programs the checksum is a hash of
what they produce: CPython's stdout, gcc's object file.
"""


import contextlib
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from ..errors import PymallocError
from ..reprs import readable


C_FLAGS = ("-O2", "-g", "-pthread")


CHECKSUM = re.compile(r"[0-9a-f]{16}")


class BenchError(PymallocError):
    """The benchmark cannot run as asked: an unknown workload, no benchmarks directory,
    no valgrind for --callgrind."""


# ---- the workloads ---------------------------------------------------------------------------

@readable
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
    "remote64": (15_000_000, 3_750_000, 2, "64 B blocks from producer to consumer threads "
                                           "through lock-free rings (remote frees)"),
    "mixed": (15_000_000, 3_750_000, 1, "random sizes 8 B-8 KiB replacing each other "
                                        "among 2000 live blocks"),
    "page_pairs": (60_000_000, 15_000_000, 1, "4 KiB malloc/free pairs, LIFO and a ring "
                                              "of 8"),
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

@readable
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


Progress = Callable[[int, int, str], None]


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
