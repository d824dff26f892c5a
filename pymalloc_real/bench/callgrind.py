"""Instructions per malloc+free pair, counted by callgrind (`bench --callgrind`), for
three patterns, each a workload run with one thread at two -n values on each allocator:

- **cached**: ``pairs``, 16 B-1 KiB blocks freed and taken again at once (LIFO) or
  through a ring of 8: the per-thread cache, the fast path;
- **4 KiB**: ``page_pairs``, the same two loops at 4096 bytes: past most small caches;
- **mixed**: ``mixed``, one thread replacing random blocks among 2000 live ones with
  new ones of random sizes 8 B-8 KiB: one free and one malloc per replacement.

The difference of the two runs cancels start-up and exit, and the instructions
executed in the workload's program itself are set apart, leaving the allocator's.
Exact, unlike wall time, on a shared machine. Here are the measuring, its record
(``Callgrind``, a ``PatternCount`` per pattern) and its section of results.md. The cached
pattern needs pairs; a pattern whose workload is missing is reported as not measured.
"""


import collections
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import preload
from .workloads import (BenchError, BuildError, _Counter, _read_result_line,
                        available_workloads, build)
from ..reprs import readable


# Each pattern's workload runs under callgrind at two -n values and the difference
# cancels start-up and exit (quick or not: callgrind counts exactly). Each run takes a
# few seconds on any allocator.
CALLGRIND_OPS = (200_000, 1_000_000)


@readable
@dataclass(frozen=True)
class Pattern:
    """A pattern: its ``name``, the ``workload`` it runs, the two -n values."""
    name: str
    workload: str
    ops: Tuple[int, int]
    about: str


CACHED = "cached"


PATTERNS = (
    Pattern(CACHED, "pairs", CALLGRIND_OPS, "16 B-1 KiB, LIFO and through a ring of 8 (the "
            "per-thread cache)"),
    Pattern("4 KiB", "page_pairs", (200_000, 1_000_000), "the same loops at 4096 B"),
    Pattern("mixed", "mixed", (200_000, 1_000_000), "a random one of 2000 live blocks "
            "replaced by one of 8 B-8 KiB (a free and a malloc)"),
)


# ---- the record --------------------------------------------------------------------------------

@readable
@dataclass
class PatternCount:
    """One pattern's counts: its workload at the two -n values ``ops``; per allocator
    the two counts of every instruction (``instructions``) and of those executed in the
    program itself (``in_program``), and per pair the allocator's share (``per_pair``)
    and the whole loop's (``per_pair_total``), None after a failure. ``missing`` says
    why the pattern was not measured (its workload is not there), else None."""
    pattern: str
    workload: str
    ops: Tuple[int, int]
    instructions: Dict[str, List[int]] = field(default_factory=dict)
    in_program: Dict[str, List[int]] = field(default_factory=dict)
    per_pair: Dict[str, Optional[float]] = field(default_factory=dict)
    per_pair_total: Dict[str, Optional[float]] = field(default_factory=dict)
    missing: Optional[str] = None

    def as_dict(self):
        return {"workload": self.workload, "ops": list(self.ops), "missing": self.missing,
                "instructions": self.instructions, "in_program": self.in_program,
                "per_pair": self.per_pair, "per_pair_total": self.per_pair_total}


@readable
@dataclass
class Callgrind:
    """Instructions per malloc+free pair, measured with callgrind: ``counts`` holds every
    pattern's PatternCount, failures are described in ``failures``. ``instructions``,
    ``in_program``, ``per_pair`` and ``per_pair_total`` are the cached pattern's (the
    pairs workload at the two -n values ``ops``), as the fast-path target reads them:
    each allocator's two counts of every instruction, the two counts of those executed
    in the pairs program itself (its loop, not the allocator), the allocator's share
    per pair (the difference of instructions - in_program over the difference in pairs)
    and the same with the loop included; None after a failure. ``patterns`` is
    pattern -> allocator -> per pair."""
    ops: Tuple[int, int]
    failures: List[str] = field(default_factory=list)
    counts: Dict[str, PatternCount] = field(default_factory=dict)

    def __post_init__(self):
        self.counts.setdefault(CACHED, PatternCount(CACHED, PATTERNS[0].workload, tuple(self.ops)))

    @property
    def instructions(self) -> Dict[str, List[int]]:
        return self.counts[CACHED].instructions

    @property
    def in_program(self) -> Dict[str, List[int]]:
        return self.counts[CACHED].in_program

    @property
    def per_pair(self) -> Dict[str, Optional[float]]:
        return self.counts[CACHED].per_pair

    @property
    def per_pair_total(self) -> Dict[str, Optional[float]]:
        return self.counts[CACHED].per_pair_total

    @property
    def patterns(self) -> Dict[str, Dict[str, Optional[float]]]:
        """pattern -> allocator -> instructions per pair in the allocator ({}: not
        measured)."""
        return {name: dict(count.per_pair) for name, count in self.counts.items()}

    @property
    def not_measured(self) -> Dict[str, str]:
        """pattern -> why it was not measured."""
        return {name: count.missing for name, count in self.counts.items() if count.missing}

    def as_dict(self):
        """Plain data for results.json."""
        return {"ops": list(self.ops), "instructions": self.instructions,
                "in_program": self.in_program, "per_pair": self.per_pair,
                "per_pair_total": self.per_pair_total, "failures": self.failures,
                "patterns": self.patterns, "not_measured": self.not_measured,
                "pattern_counts": {name: count.as_dict() for name, count in
                                   self.counts.items()}}


# ---- what will run -----------------------------------------------------------------------------

def callgrind_plan(config, bench_dir):
    """[(Pattern with the -n values to use, its Workload or None when missing)] for
    --callgrind. The cached pattern runs at ``config.callgrind_ops``, the others at
    ``config.callgrind_pattern_ops`` or their own. BenchError without valgrind, without
    pairs, or with -n values that are not positive and increasing."""
    if shutil.which("valgrind") is None:
        raise BenchError("--callgrind needs valgrind, which is not installed (Debian: "
                         "apt-get install valgrind)")
    by_name = {w.name: w for w in available_workloads(bench_dir)}
    if PATTERNS[0].workload not in by_name:
        raise BenchError(f"--callgrind needs the pairs workload: no "
                         f"{os.path.join(bench_dir, 'workloads', 'pairs.c')}")
    chosen = config.callgrind_pattern_ops
    unknown = set(chosen) - {p.name for p in PATTERNS}
    if unknown:
        raise BenchError(f"no callgrind pattern {', '.join(sorted(unknown))}: the patterns "
                         f"are {', '.join(p.name for p in PATTERNS)}")
    planned = []
    for pattern in PATTERNS:
        ops = tuple(config.callgrind_ops) if pattern.name == CACHED else \
            tuple(chosen.get(pattern.name, pattern.ops))
        if len(ops) != 2 or not 0 < ops[0] < ops[1]:
            raise BenchError(f"callgrind's two -n values ({pattern.name}) must be positive "
                             "and increasing")
        planned.append((Pattern(pattern.name, pattern.workload, ops, pattern.about),
                        by_name.get(pattern.workload)))
    return planned


# ---- instructions per pair (callgrind) ---------------------------------------------------------

def measure_patterns(planned, allocators, bin_dir, seed=1, timeout=None, counter=None):
    """Every pattern of ``planned`` (callgrind_plan's) on each allocator: its workload
    built into ``bin_dir`` and counted as ``measure_callgrind`` does. A missing workload
    leaves its pattern not measured; a build failure is a failure. Returns a
    Callgrind."""
    cached = planned[0][0]
    result = Callgrind(cached.ops)
    counter = counter or _Counter(None, 0)
    for pattern, workload in planned:
        count = result.counts[CACHED] if pattern.name == CACHED else \
            PatternCount(pattern.name, pattern.workload, pattern.ops)
        result.counts[pattern.name] = count
        if workload is None:
            count.missing = f"no workloads/{pattern.workload}.c"
            continue
        try:
            executable = build(workload, bin_dir)
        except BuildError as error:
            result.failures.append(f"{pattern.name} ({pattern.workload}): {error}")
            counter.skip(2 * len(allocators))
            continue
        _count(result, count, executable, allocators, seed, timeout, counter)
    return result


def measure_callgrind(executable, allocators, ops=CALLGRIND_OPS, seed=1, timeout=None,
                      counter=None):
    """Instructions per malloc+free pair of the pairs program ``executable`` on each
    allocator: callgrind counts every instruction of a run at each of the two -n values
    ``ops``, and (I2 - I1) / (pairs2 - pairs1) leaves only what the pairs cost, start-up
    and exit cancelled. Counting apart the instructions executed in the program itself
    (the loop around malloc and free) leaves the allocator's. One thread. Returns a
    Callgrind with the cached pattern only."""
    result = Callgrind(tuple(ops))
    _count(result, result.counts[CACHED], executable, allocators, seed, timeout,
           counter or _Counter(None, 0))
    return result


def _count(result, count, executable, allocators, seed, timeout, counter):
    """Fill in ``count`` for each allocator; failures go to ``result.failures``."""
    label = "" if count.pattern == CACHED else f"{count.pattern}: "
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-callgrind-") as scratch:
        for index, name in enumerate(allocators):
            counts = []
            for n in count.ops:
                counter.step(f"callgrind: {count.workload} -n {n} on {name}")
                # By position, not name: an allocator given as a path would otherwise
                # put the profile beside the library.
                measured, problem = _callgrind_once(executable, name, n, seed, timeout,
                                                    os.path.join(scratch, f"{index}.{n}"))
                if problem:
                    result.failures.append(f"{label}{name}, -n {n}: {problem}")
                    counter.skip(len(count.ops) - len(counts) - 1)
                    break
                counts.append(measured)
            _per_pair(count, name, counts)


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
    a workload under callgrind, or (None, what went wrong)."""
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


# ---- its section of results.md -------------------------------------------------------------------

def markdown_lines(callgrind, allocators):
    """The section "Instructions per malloc+free pair (callgrind)": a row per pattern
    and a column per allocator, then every count."""
    if callgrind is None:
        return []
    names = list(dict.fromkeys(list(allocators) + [n for c in callgrind.counts.values()
                                                   for n in c.per_pair]))
    lines = ["## Instructions per malloc+free pair (callgrind)", "",
             "Each pattern's workload with one thread under `valgrind --tool=callgrind` at "
             "two -n values: the difference in instructions over the difference in "
             "malloc+free pairs, so start-up and exit cancel out, leaving out the "
             "instructions executed in the workload's program itself (its loop: sizes, "
             "writing and checking each block). " + "; ".join(
                 f"*{p.name}*: {p.workload}, {p.about}" for p in PATTERNS) + ".", "",
             "| pattern | workload | -n | " + " | ".join(names) + " |",
             "|---|---|---" + "|---:" * len(names) + "|"]
    for name, count in callgrind.counts.items():
        if count.missing:
            cells = [f"not measured ({count.missing})"] + ["-"] * (len(names) - 1)
        else:
            cells = [_value(count.per_pair, n, bold=n == preload.OURS) for n in names]
        lines.append(f"| {name} | {count.workload} | {count.ops[0]:,} and {count.ops[1]:,} "
                     f"| " + " | ".join(cells) + " |")
    lines += ["", "Every count: *in the allocator* leaves out the program's instructions, "
              "*whole loop* counts them too.", "",
              "| pattern | allocator | instructions (low n) | instructions (high n) | in the "
              "allocator, per pair | whole loop, per pair |", "|---|---|---:|---:|---:|---:|"]
    for name, count in callgrind.counts.items():
        for allocator in count.per_pair:
            totals = count.instructions.get(allocator, []) + [None, None]
            cells = ["-" if t is None else f"{t:,}" for t in totals[:2]]
            lines.append(f"| {name} | {allocator} | {cells[0]} | {cells[1]} | "
                         f"{_value(count.per_pair, allocator, bold=True)} | "
                         f"{_value(count.per_pair_total, allocator, failed='-')} |")
    return lines + [""]


def _value(values, name, bold=False, failed="FAILED"):
    if name not in values:
        return "-"
    value = values[name]
    if value is None:
        return failed
    return f"**{value:.1f}**" if bold else f"{value:.1f}"
