"""The result of a benchmark run and how it is written down: the records (``Run``,
``Cell``, ``WorkloadResult``, ``BenchResult``; callgrind's ``Callgrind`` and its section
of results.md are callgrind.py's), the targets it is judged by (issue 5's: our wall time
and peak RSS against glibc's per workload, the geometric mean, the fast path's
instructions, the stretch against mimalloc; then issue 14's instructions per pair in
each callgrind pattern; each met, missed or not measured), and its text forms: plain
data for results.json and the Markdown of results.md. Nothing here measures
(harness.py does) or prints.
"""


import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..preload import GLIBC, OURS, Spread
from .callgrind import CACHED, Callgrind, markdown_lines
from ..reprs import readable


RESULT_FILES = ("results.json", "results.md", "results.png")


# ---- results ---------------------------------------------------------------------------------

@readable
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


@readable
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


@readable
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


@readable
@dataclass
class BenchResult:
    """A whole benchmark run: where and when (``machine``, ``date``, ``commit``), the
    settings, the allocators run and those missing (name -> message with the install
    hint), each workload's result, callgrind's counts (None unless asked), the targets
    (Target, filled in by the harness) and the files written (name -> path)."""
    machine: Dict[str, object]
    date: str
    commit: Optional[str]
    settings: Dict[str, object]
    allocators: List[str]
    missing: Dict[str, str]
    workloads: List[WorkloadResult]
    callgrind: Optional[Callgrind] = None
    targets: list = field(default_factory=list)      # Target
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
        return result_dict(self)

    def markdown(self):
        """results.md: the tables, the targets, the failures and the machine."""
        return markdown(self)


MIMALLOC = "mimalloc"


# The targets of issue 5, as ratios of medians (ours / theirs) and an instruction count.
TIME_TARGET, GEOMEAN_TARGET, RSS_TARGET = 1.0, 0.85, 1.0


FAST_PATH_TARGET, MIMALLOC_STRETCH = 70, 1.25


# Issue 14 ("Speed"): instructions per malloc+free pair, ours, per callgrind pattern.
SPEED_TARGETS = ((CACHED, 74), ("4 KiB", 120), ("mixed", 120))


# ---- targets -----------------------------------------------------------------------------------

@readable
@dataclass
class Target:
    """One line of the targets table: what was aimed at, what was measured, and whether
    it was met (None: not measured in this run, ``value`` says why)."""
    goal: str
    value: str
    met: Optional[bool]

    @property
    def verdict(self):
        return "not measured" if self.met is None else "met" if self.met else "missed"


@readable
@dataclass
class TargetRow:
    """Our ratios for one workload: wall time and peak RSS to glibc's, wall time to
    mimalloc's (None where one of the two did not run or passed no run)."""
    workload: str
    time_vs_glibc: Optional[float]
    rss_vs_glibc: Optional[float]
    time_vs_mimalloc: Optional[float]


def target_rows(result):
    """A TargetRow per workload."""
    return [TargetRow(w.name, w.ratio(OURS, "wall_time"), w.ratio(OURS, "max_rss"),
                      w.ratio(OURS, "wall_time", to=MIMALLOC)) for w in result.workloads]


def geometric_mean(values):
    values = [value for value in values if value]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def targets(result):
    """Issue 5's targets against this run's numbers (ours against glibc and mimalloc),
    then issue 14's, instructions per pair in each callgrind pattern (rows of their own,
    after issue 5's, whose order does not change)."""
    rows = target_rows(result)
    needed = {OURS, GLIBC} - set(result.allocators)
    return [
        _every(rows, "time_vs_glibc", TIME_TARGET, f"wall time <= {TIME_TARGET:.2f}x glibc "
               "on every workload", needed),
        _geomean(rows, needed),
        _every(rows, "rss_vs_glibc", RSS_TARGET, f"peak RSS <= {RSS_TARGET:.2f}x glibc on "
               "every workload", needed),
        _fast_path(result.callgrind),
        _every(rows, "time_vs_mimalloc", MIMALLOC_STRETCH, f"stretch: wall time <= "
               f"{MIMALLOC_STRETCH:.2f}x mimalloc on every workload",
               {OURS, MIMALLOC} - set(result.allocators)),
    ] + [_instructions(f"issue 14: {pattern} pattern <= {limit} instructions per "
                       "malloc+free pair (callgrind)", result.callgrind, pattern, limit)
         for pattern, limit in SPEED_TARGETS]


def _every(rows, attribute, limit, goal, needed):
    if needed:
        return Target(goal, f"{' and '.join(sorted(needed))} not run", None)
    if not rows:
        return Target(goal, "no workloads", None)
    values = {row.workload: getattr(row, attribute) for row in rows}
    unmeasured = [name for name, value in values.items() if value is None]
    over = [f"{name} {value:.2f}x" for name, value in values.items()
            if value is not None and not meets(value, limit)]
    measured = [value for value in values.values() if value is not None]
    worst = max(measured) if measured else None
    text = f"worst {worst:.2f}x" if worst is not None else "no ratio"
    if over:
        text += f"; over: {', '.join(over)}"
    if unmeasured:
        text += f"; no ratio for {', '.join(unmeasured)} (failed runs)"
    return Target(goal, text, not over and not unmeasured)


def meets(value, limit, digits=2):
    """Whether a measured value is within its target as printed (to ``digits``
    decimals): a ratio shown as 1.00x meets a 1.00x target."""
    return round(value, digits) <= limit


def _optional(value):
    return "not measured" if value is None else f"{value:.1f}"


def _geomean(rows, needed):
    goal = f"geometric mean of wall time <= {GEOMEAN_TARGET:.2f}x glibc"
    if needed:
        return Target(goal, f"{' and '.join(sorted(needed))} not run", None)
    mean = geometric_mean([row.time_vs_glibc for row in rows])
    if mean is None:
        return Target(goal, "no ratio", None)
    count = sum(bool(row.time_vs_glibc) for row in rows)
    return Target(goal, f"{mean:.2f}x over {count} workload{'s' * (count != 1)}",
                  meets(mean, GEOMEAN_TARGET))


def _fast_path(callgrind):
    return _instructions(f"fast path <= {FAST_PATH_TARGET} instructions per malloc+free pair",
                         callgrind, CACHED, FAST_PATH_TARGET)


def _instructions(goal, callgrind, pattern, limit):
    """Our instructions per pair in one callgrind pattern against ``limit``."""
    if callgrind is None:
        return Target(goal, "not run (--callgrind)", None)
    count = callgrind.counts.get(pattern)
    if count is None or count.missing:
        return Target(goal, f"not measured ({count.missing if count else 'no ' + pattern})",
                      None)
    per_pair = callgrind.per_pair if pattern == CACHED else count.per_pair
    value = per_pair.get(OURS)
    if OURS not in per_pair:
        return Target(goal, f"{OURS} not run", None)
    if value is None:
        return Target(goal, f"{OURS} failed under callgrind", False)
    return Target(goal, f"{value:.1f} (glibc {_optional(per_pair.get(GLIBC))})",
                  meets(value, limit, digits=1))


def result_dict(result):
    """A BenchResult as plain data (results.json)."""
    return {
        "date": result.date, "commit": result.commit, "machine": result.machine,
        "settings": result.settings, "allocators": result.allocators,
        "missing": result.missing, "ok": result.ok, "failures": result.failures,
        "workloads": [_workload_dict(w) for w in result.workloads],
        "callgrind": None if result.callgrind is None else result.callgrind.as_dict(),
        "targets": [{"goal": t.goal, "value": t.value, "met": t.met, "verdict": t.verdict}
                    for t in result.targets],
        "target_rows": [vars(row) for row in target_rows(result)],
        "geomean_time_vs_glibc": geometric_mean([r.time_vs_glibc for r in target_rows(result)]),
        "files": result.files, "notes": result.notes,
    }


def _spread_dict(spread):
    return {"median": spread.median, "min": spread.low, "max": spread.high}


def _workload_dict(workload):
    return {
        "name": workload.name, "kind": workload.kind, "about": workload.about,
        "command": workload.command, "ops": workload.ops, "threads": workload.threads,
        "reference_checksum": workload.reference, "error": workload.error,
        "failures": workload.failures,
        "allocators": {name: {
            "metrics": {k: _spread_dict(s) for k, s in cell.metrics.items()},
            "ratios_to_glibc": cell.ratios,
            "reported": {k: _spread_dict(s) for k, s in cell.reported.items()},
            "failures": cell.failures,
            "runs": [vars(run) for run in cell.runs]} for name, cell in workload.cells.items()},
    }


# ---- results.md ----------------------------------------------------------------------------------

_MiB = 1024 * 1024


# (metric, title, scale, format) of the tables in results.md
_TABLES = (("wall_time", "Wall time (s)", 1, "{:.3f}"),
           ("max_rss", "Peak RSS (MiB)", _MiB, "{:.1f}"),
           ("minor_faults", "Minor page faults", 1, "{:,.0f}"))


def markdown(result):
    lines = ["# Allocator benchmarks", "", _header(result), ""]
    if result.missing:
        lines += ["**Missing allocators** (not run):", ""]
        lines += [f"- {name}: {message}" for name, message in result.missing.items()] + [""]
    lines += _workload_lines(result)
    for metric, title, scale, style in _TABLES:
        lines += _metric_table(result, metric, title, scale, style)
    lines += _reported_table(result)
    lines += markdown_lines(result.callgrind, result.allocators)
    lines += _target_lines(result)
    failures = result.failures
    lines += ["## Checks", ""]
    lines += (["All runs exited 0 with their workload's checksum."] if not failures else
              [f"**{len(failures)} rejected** (a run counts only with exit status 0 and the "
               "checksum the other allocators' runs agree on; a workload that does not "
               "build counts as one):", ""]
              + [line for text in failures for line in _item(text)])
    lines += [""] + ([f"- {note}" for note in result.notes] + [""] if result.notes else [])
    lines += _machine_lines(result)
    return "\n".join(lines) + "\n"


def _item(text):
    """A list item; a message of several lines (a compiler's) keeps them in a block."""
    first, *rest = text.splitlines()
    return [f"- {first}"] + (["", "  ```"] + [f"  {line}" for line in rest] + ["  ```"]
                             if rest else [])


def _workload_lines(result):
    lines = ["## Workloads", "", "| workload | what it does | -n | -t | checksum |",
             "|---|---|---:|---:|---|"]
    for w in result.workloads:
        lines.append(f"| {w.name} | {w.about} | {w.ops:,} | {w.threads} | "
                     f"{'`' + w.reference + '`' if w.reference else '-'} |")
    return lines + [""]


def _header(result):
    settings = result.settings
    return (f"{result.date}, commit {result.commit or 'unknown'}. Every workload on every "
            f"allocator, {settings['repeat']} interleaved runs each"
            f"{' (--quick)' if settings['quick'] else ''}; a cell is the median (min-max) "
            "over the runs that passed the checks, and **the ratio of medians to glibc**.")


def _metric_table(result, metric, title, scale, style):
    header = ["workload"] + result.allocators
    lines = [f"## {title}", "", "| " + " | ".join(header) + " |",
             "|---" + "|---:" * len(result.allocators) + "|"]
    for workload in result.workloads:
        cells = [f"{workload.name}"]
        for name in result.allocators:
            cells.append(_cell_text(workload, name, metric, scale, style))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _cell_text(workload, allocator, metric, scale, style):
    if workload.error:
        return "not built"
    cell = workload.cells.get(allocator)
    if cell is None or metric not in cell.metrics:
        return "FAILED"
    spread = cell.metrics[metric]
    text = (f"{style.format(spread.median / scale)} ({style.format(spread.low / scale)}-"
            f"{style.format(spread.high / scale)})")
    ratio = cell.ratios.get(metric)
    if ratio is not None and allocator != GLIBC:
        text += f" **{ratio:.2f}x**"
    if cell.failures:
        text += f" ({len(cell.failures)} failed)"
    return text


def _reported_table(result):
    """The values workloads print besides the checksum (frag's RSS), medians."""
    rows = []
    for workload in result.workloads:
        keys = list(dict.fromkeys(k for c in workload.cells.values() for k in c.reported))
        for key in keys:
            values = [workload.cells[name].reported.get(key) if name in workload.cells
                      else None for name in result.allocators]
            rows.append(f"| {workload.name} | {key} | " + " | ".join(
                "-" if v is None else f"{v.median:,.0f}" for v in values) + " |")
    if not rows:
        return []
    return (["## Reported by the workloads (medians)", "",
             "| workload | value | " + " | ".join(result.allocators) + " |",
             "|---|---" + "|---:" * len(result.allocators) + "|"] + rows + [""])


def _target_lines(result):
    rows = target_rows(result)
    lines = ["## Targets", "", f"Ours ({OURS}) against glibc and mimalloc, ratios of "
             "medians.", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t.goal} | {t.value} | **{t.verdict}** |" for t in result.targets]
    lines += ["", "| workload | time / glibc | peak RSS / glibc | time / mimalloc |",
              "|---|---:|---:|---:|"]
    for row in rows:
        cells = [_ratio_text(row.time_vs_glibc, TIME_TARGET),
                 _ratio_text(row.rss_vs_glibc, RSS_TARGET),
                 _ratio_text(row.time_vs_mimalloc, MIMALLOC_STRETCH)]
        lines.append(f"| {row.workload} | " + " | ".join(cells) + " |")
    mean = geometric_mean([row.time_vs_glibc for row in rows])
    if mean is not None:
        lines.append(f"| geometric mean | {_ratio_text(mean, GEOMEAN_TARGET)} | | |")
    return lines + [""]


def _ratio_text(value, limit):
    if value is None:
        return "-"
    return f"{value:.2f}x {'met' if meets(value, limit) else 'missed'}"


def _machine_lines(result):
    m = result.machine
    return ["## Machine", "",
            f"{m['cpu']}, {m['cpus']} CPUs ({m['usable_cpus']} usable), {m['kernel']} "
            f"{m['arch']}, {m['glibc']}, {m['python']}, gcc {m['gcc']}"
            + (f", {m['valgrind']}" if result.callgrind and m.get('valgrind') else "") + ".",
            "", "Libraries: " + "; ".join(
                f"{name} {info['library'] or '(no preload)'}"
                + (f" {info['version']}" if info['version'] else "")
                for name, info in result.settings["libraries"].items()) + "."]
