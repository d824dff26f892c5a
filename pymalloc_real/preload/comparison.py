"""One command on several allocators, side by side (issue 4).

This module owns the measurement plan (interleaved repeats: every repeat runs each
allocator once, starting one further along the list each time, so drift in the
machine's state spreads over all of them), the summary (median and range of wall time,
CPU time, peak RSS and minor faults, and ratios of medians to a baseline, glibc by
default), the checks (every run exited 0; every run printed the same stdout) and the
Markdown table. Runs come from ``preload.run``; an allocator whose library is missing
is reported as missing rather than ending the comparison. Nothing here prints.
"""
import hashlib
import shlex
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import libraries, runner
from . import options as options_module     # `options` is an argument below
from .libraries import ALLOCATORS, GLIBC, LibraryMissing
from .options import OptionError
from ..reprs import readable

_MiB = 1024 * 1024


@readable
@dataclass(frozen=True)
class Metric:
    """A measured quantity: the RunReport attribute, its name in the table, its kind
    ("time" in seconds, "bytes", "count")."""
    attribute: str
    label: str
    kind: str


METRICS = (Metric("wall_time", "wall", "time"), Metric("cpu_time", "CPU", "time"),
           Metric("max_rss", "peak RSS", "bytes"), Metric("minor_faults", "minor faults", "count"))


@readable
@dataclass
class Spread:
    """One metric over the repeats: median, lowest and highest."""
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values):
        return cls(statistics.median(values), min(values), max(values))


@readable
@dataclass
class AllocatorResult:
    """One allocator's part of a comparison.

    ``missing`` is the message (with the install hint) when its library is not
    installed; then there are no runs. ``metrics`` maps a Metric's attribute to its
    Spread, ``ratios`` to the ratio of medians to the baseline (None without one).
    ``failures`` describes each run that did not exit 0; ``same_stdout`` is None when
    stdout was not checked. ``stats`` is our library's statistics from the first run.
    ``stdout_digests`` holds a SHA-256 of each run's stdout (the text itself is dropped).
    """
    name: str
    library: Optional[str] = None
    missing: Optional[str] = None
    runs: List[runner.RunReport] = field(default_factory=list)
    metrics: Dict[str, Spread] = field(default_factory=dict)
    ratios: Dict[str, Optional[float]] = field(default_factory=dict)
    failures: List[str] = field(default_factory=list)
    same_stdout: Optional[bool] = None
    stats: Optional[dict] = None
    stdout_digests: List[str] = field(default_factory=list)

    @property
    def runs_ok(self):
        """How many runs exited 0."""
        return sum(run.ok for run in self.runs)


@readable
@dataclass
class Comparison:
    """The result of ``compare``: per allocator, in the order asked, the spreads, the
    ratios to ``baseline`` (None when no allocator could serve as one) and the checks."""
    command: List[str]
    repeat: int
    baseline: Optional[str]
    check_stdout: bool
    allocators: List[AllocatorResult]
    notes: List[str] = field(default_factory=list)

    @property
    def missing(self):
        """The allocators whose library is not installed."""
        return [result for result in self.allocators if result.missing]

    @property
    def ok(self):
        """Every run of every available allocator exited 0 and, when checked, printed
        the same stdout."""
        return all(not result.failures and result.same_stdout is not False
                   for result in self.allocators if not result.missing)

    def table(self):
        """The comparison as Markdown: a header line, the table, and notes."""
        return _table(self)

    def as_dict(self):
        """The comparison as plain data for JSON."""
        return {"command": self.command, "repeat": self.repeat, "baseline": self.baseline,
                "check_stdout": self.check_stdout, "ok": self.ok, "notes": self.notes,
                "allocators": [_result_dict(result) for result in self.allocators]}


def compare(cmd, allocators=ALLOCATORS, repeat=5, options=None, env=None,
            timeout=None, input=None, check_stdout=True, baseline=GLIBC, warmup=0,
            progress: Optional[Callable[[int, int, str], None]] = None):
    """Run ``cmd`` ``repeat`` times on each allocator, interleaved, and summarise.

    ``allocators`` are names or library paths as ``preload.run`` takes them; a missing
    library is reported, not raised. ``options`` go to our library only. ``input`` is
    the command's stdin (empty when None, so every run reads the same). With
    ``check_stdout`` every run's stdout must equal the first run's. ``warmup`` rounds
    run first and are not counted. ``progress(done, total, allocator)`` is called
    before each run. Returns a Comparison; raises OptionError for a bad name, option
    or repeat count.
    """
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(arg) for arg in cmd]
    if repeat < 1 or warmup < 0:
        raise OptionError("repeat must be at least 1 and warmup at least 0")
    chosen = options_module.parse_options(options)
    names = list(dict.fromkeys(allocators))
    if chosen and not any(libraries.is_ours(name) for name in names):
        raise OptionError("options are for pymalloc_real's library, which is not among "
                          f"the allocators ({', '.join(names)})")
    results = [_resolve(name) for name in names]
    available = [result for result in results if not result.missing]
    plan = interleaved_plan(available, warmup, repeat)
    for done, (result, counted) in enumerate(plan):
        if progress:
            progress(done, len(plan), result.name)
        report = runner.run(argv, allocator=result.name,
                            options=chosen if libraries.is_ours(result.name) else None,
                            env=env, timeout=timeout, input=b"" if input is None else input)
        if counted:
            _record(result, report)
    if progress:
        progress(len(plan), len(plan), "")
    comparison = Comparison(argv, repeat, None, check_stdout, results)
    _summarise(comparison, baseline)
    if check_stdout:
        _check_stdout(comparison)
    return comparison


def _resolve(name):
    try:
        return AllocatorResult(name, library=libraries.resolve(name).library)
    except LibraryMissing as error:
        return AllocatorResult(name, missing=str(error))


def interleaved_plan(available, warmup, repeat):
    """(allocator, counted) in running order: round r starts r places along the list."""
    plan = []
    for round_ in range(warmup + repeat):
        shift = round_ % len(available) if available else 0
        for result in available[shift:] + available[:shift]:
            plan.append((result, round_ >= warmup))
    return plan


def _record(result, report):
    """Keep a run's numbers and a digest of its stdout, note a failure, and drop the
    output: a long comparison of a chatty command should not hold it all."""
    result.stdout_digests.append(hashlib.sha256((report.stdout or "").encode()).hexdigest())
    if not report.ok:
        how = (f"killed by {report.signal_name}" if report.signal is not None
               else f"exit status {report.exit_status}")
        tail = (report.stderr or "").strip().splitlines()[-1:] or [""]
        result.failures.append(f"run {len(result.runs) + 1}: {how}"
                               + (f" ({tail[0][:120]})" if tail[0] else ""))
    if result.stats is None and report.stats is not None:
        result.stats = report.stats
    report.stdout = report.stderr = None
    result.runs.append(report)


def _summarise(comparison, baseline):
    available = [result for result in comparison.allocators if not result.missing]
    for result in available:
        for metric in METRICS:
            result.metrics[metric.attribute] = Spread.of(
                [getattr(run, metric.attribute) for run in result.runs])
    base = next((r for r in available if r.name == baseline), None)
    if base is None and available:
        base = available[0]
        comparison.notes.append(f"{baseline} is not among the allocators run: ratios are "
                                f"to {base.name}")
    comparison.baseline = base.name if base else None
    for result in available:
        for metric in METRICS:
            ours, theirs = (r.metrics[metric.attribute].median for r in (result, base))
            result.ratios[metric.attribute] = ours / theirs if theirs else None
    for result in comparison.allocators:
        if result.missing:
            comparison.notes.append(f"{result.name}: missing: {result.missing}")
        for failure in result.failures:
            comparison.notes.append(f"{result.name}: {failure}")


def _check_stdout(comparison):
    """Every run's stdout against the baseline's first run: a differing allocator (or a
    baseline whose repeats differ among themselves) is flagged in the notes."""
    available = [result for result in comparison.allocators if not result.missing]
    base = next((r for r in available if r.name == comparison.baseline), None)
    if base is None:
        return
    reference = base.stdout_digests[0]
    for result in available:
        result.same_stdout = all(digest == reference for digest in result.stdout_digests)
        if not result.same_stdout:
            differing = sum(digest != reference for digest in result.stdout_digests)
            comparison.notes.append(
                f"{result.name}: stdout differs from {base.name}'s first run in {differing} "
                f"of {len(result.stdout_digests)} runs")


# ---- the table ---------------------------------------------------------------------------------

def _table(comparison):
    base = comparison.baseline or "baseline"
    units = {m.attribute: _unit(m, comparison) for m in METRICS}
    header = ["allocator"]
    for metric in METRICS:
        unit = units[metric.attribute][0]
        header += [f"{metric.label}{' (' + unit + ')' if unit else ''}",
                   f"{metric.label} / {base}"]
    header += ["exit 0", "same stdout"]
    rows = [_row(result, comparison, units) for result in comparison.allocators]
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = [f"`{shlex.join(comparison.command)}`: {comparison.repeat} interleaved "
             f"repeat{'s' * (comparison.repeat > 1)} per allocator; median (min-max); "
             f"X / {base} = ratio of medians.", ""]
    lines += ["| " + " | ".join(cells) + " |" for cells in [header, align] + rows]
    if comparison.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in comparison.notes]
    return "\n".join(lines) + "\n"


def _row(result, comparison, units):
    if result.missing:
        return [result.name] + ["missing"] + [""] * (2 * len(METRICS) - 1) + ["", ""]
    cells = [result.name]
    for metric in METRICS:
        spread = result.metrics[metric.attribute]
        _, scale, digits = units[metric.attribute]
        cells.append(f"{_number(spread.median / scale, digits)} "
                     f"({_number(spread.low / scale, digits)}-"
                     f"{_number(spread.high / scale, digits)})")
        ratio = result.ratios[metric.attribute]
        cells.append("-" if ratio is None else f"{ratio:.2f}")
    cells.append(f"{result.runs_ok}/{len(result.runs)}")
    cells.append("not checked" if result.same_stdout is None else
                 "yes" if result.same_stdout else "NO")
    return cells


def _unit(metric, comparison):
    """(unit, scale, decimals) for a column: seconds or milliseconds by the largest
    median, MiB for bytes, plain counts."""
    if metric.kind == "bytes":
        return "MiB", _MiB, 1
    if metric.kind == "count":
        return "", 1, 0
    medians = [r.metrics[metric.attribute].median for r in comparison.allocators if r.metrics]
    return ("s", 1, 3) if medians and max(medians) >= 1 else ("ms", 1e-3, 1)


def _number(value, digits):
    return f"{value:,.{digits}f}"


def _result_dict(result):
    return {
        "name": result.name, "library": result.library, "missing": result.missing,
        "runs_ok": result.runs_ok, "runs": len(result.runs), "failures": result.failures,
        "same_stdout": result.same_stdout, "stats": result.stats,
        "metrics": {name: {"median": s.median, "min": s.low, "max": s.high}
                    for name, s in result.metrics.items()},
        "ratios": result.ratios,
        "each_run": [{"exit_status": run.exit_status, "signal": run.signal,
                      "wall_time": run.wall_time, "cpu_time": run.cpu_time,
                      "max_rss": run.max_rss, "minor_faults": run.minor_faults,
                      "major_faults": run.major_faults, "launcher": run.launcher,
                      "notes": run.notes} for run in result.runs],
    }
