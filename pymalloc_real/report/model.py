"""The ``Report`` and the ways to make one: ``report(cmd)`` runs a program under the
preload library recording its allocations (and, when the recorder gives them, its call
sites and timeline), replays the trace through our core for the heap map, and with
``allocators`` runs it on the peers too; ``from_recording`` and ``from_trace`` start
from what was already recorded.
"""


import os
import shlex
from dataclasses import dataclass, field
from typing import List, Optional

from .. import preload
from .. import trace as tracing
from ..errors import PymallocError
from . import heapmap as heapmaps
from .measures import measure
from .page import _bytes
from .sites import rows as site_rows_of


class ReportError(PymallocError, ValueError):
    """A report that cannot be made: nothing recorded, a bad argument."""


@dataclass
class Report:
    """One program's memory: what the run cost (``wall_time``, ``max_rss``, faults: None
    when made from a trace alone), the trace's ``measures``, the ``heapmap`` replayed
    through our core, the call sites (``site_rows``, None when the recorder gave none:
    ``sites_missing`` says why), the recorder's ``timeline`` (None without), the
    ``comparison`` with other allocators (None without), and ``notes``.
    ``save_html(path)`` writes the page; in Jupyter it shows inline."""
    command: str
    measures: object
    live: object                        # numpy: live bytes after each op
    heapmap: object
    pid: int = 0
    exit_status: Optional[int] = None
    wall_time: Optional[float] = None
    cpu_time: Optional[float] = None
    max_rss: Optional[int] = None
    minor_faults: Optional[int] = None
    major_faults: Optional[int] = None
    site_rows: Optional[list] = None
    sites_missing: str = ""
    timeline: Optional[list] = None
    comparison: object = None
    notes: List[str] = field(default_factory=list)

    # ---- what the page shows ----

    @property
    def calls_per_second(self):
        """Allocation calls per second of the run's wall time (None without a run)."""
        if not self.wall_time:
            return None
        return self.measures.ops / self.wall_time

    def top_site(self, metric="peak_bytes"):
        """The first call site by ``metric`` (peak_bytes, calls, leaked_bytes), or None."""
        from .sites import ranked
        found = ranked(self.site_rows or [], metric, 1)
        return found[0] if found else None

    def summary_cards(self):
        """(label, value, detail) for the page's summary."""
        m = self.measures
        cards = []
        if self.wall_time is not None:
            cards.append(("run time", f"{self.wall_time:.3f} s",
                          f"CPU {self.cpu_time:.3f} s" if self.cpu_time is not None else ""))
        cards.append(("peak live", _bytes(m.peak_live), f"after operation {m.peak_live_op:,}"))
        if self.max_rss is not None:
            cards.append(("peak RSS", _bytes(self.max_rss), "of the command's process tree"))
        cards.append(("allocation calls", f"{m.ops:,}",
                      f"{m.mallocs:,} allocations, {m.frees:,} frees, {m.reallocs:,} reallocs"))
        if self.calls_per_second is not None:
            cards.append(("calls per second", f"{self.calls_per_second:,.0f}", "over wall time"))
        cards.append(("leaked", _bytes(m.leaked_bytes),
                      f"{m.leaked_objects:,} object(s) never freed"))
        cards.append(("temporary allocations", f"{m.temporary:,}",
                      f"{m.temporary_share:.1%}: freed before any other allocation"))
        if self.minor_faults is not None:
            cards.append(("page faults", f"{self.minor_faults:,} minor",
                          f"{self.major_faults:,} major"))
        hm = self.heapmap
        if hm.heap_bytes:
            cards.append(("peak footprint (replayed)",
                          _bytes(max(h + p for h, p in zip(hm.series_heap, hm.series_mapped))),
                          "heap segments + mapped chunks in our core"))
        return cards

    def as_dict(self):
        """The numbers as plain data (JSON): summary, size classes, top sites."""
        import dataclasses
        from .sites import METRICS, as_dicts, ranked
        out = {"command": self.command, "pid": self.pid, "exit_status": self.exit_status,
               "wall_time": self.wall_time, "max_rss": self.max_rss,
               "minor_faults": self.minor_faults, "major_faults": self.major_faults,
               "calls_per_second": self.calls_per_second, "notes": self.notes}
        measures = dataclasses.asdict(self.measures)
        measures.pop("series_op")
        measures.pop("series_live")
        out["measures"] = measures
        if self.site_rows:
            out["sites"] = {metric: as_dicts(ranked(self.site_rows, metric))
                            for metric, _ in METRICS}
        return out

    # ---- output ----

    def to_html(self):
        """The self-contained page, as text."""
        from .page import render
        return render(self)

    def save_html(self, path):
        """Write the page to ``path``; returns the path."""
        text = self.to_html()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def _repr_html_(self):
        """Jupyter: the page in an iframe (its scripts run apart from the notebook's)."""
        import html
        return (f'<iframe srcdoc="{html.escape(self.to_html(), quote=True)}" '
                'style="width:100%;height:900px;border:0"></iframe>')

    def __repr__(self):
        return (f"<Report {self.command!r}: {self.measures.ops:,} ops, peak live "
                f"{_bytes(self.measures.peak_live)}, leaked {_bytes(self.measures.leaked_bytes)}>")


def from_trace(trace, command=None, snapshots=heapmaps.SNAPSHOTS, samples=heapmaps.SAMPLES):
    """A Report of a trace alone (a pymalloc_real.trace.Trace, or a path to a trace
    file): measures and the heap map, no run numbers, no call sites."""
    _require_libraries()
    if isinstance(trace, (str, os.PathLike)):
        trace = tracing.load(trace)
    if len(trace) == 0:
        raise ReportError("the trace holds no allocation calls: nothing to report")
    measures, live = measure(trace)
    hm = heapmaps.build(trace, measures.peak_live, measures.peak_live_op, samples=samples,
                        snapshots=snapshots)
    return Report(command=command or trace.description or "trace", measures=measures,
                  live=live, heapmap=hm, sites_missing="a trace file has no call sites")


def from_recording(recording, command=None, **kwargs):
    """A Report of a recording (``pymalloc_real.trace.record_run``'s): the trace, the
    run's numbers, and the call sites and timeline when the recording has them."""
    chosen = recording.trace
    run = recording.report
    what = command or _command_text(getattr(recording, "command", None) or run.command)
    if chosen is None or len(chosen) == 0:
        busy = {pid: len(t) for pid, t in recording.others.items() if t is not None and len(t)}
        if busy:
            raise ReportError(
                f"{what!r} (pid {run.pid}) made no allocation call itself; the processes it "
                f"started did ({', '.join(f'pid {p}: {n:,} calls' for p, n in busy.items())}): "
                "report on the program itself (`pymalloc-real trace --largest` records the "
                "busiest)")
        raise ReportError(tracing.why_empty(what, run))
    report = from_trace(chosen, command=what, **kwargs)
    report.pid = getattr(recording, "pid", None) or run.pid
    report.exit_status = run.exit_status
    report.wall_time = run.wall_time
    report.cpu_time = run.cpu_time
    report.max_rss = run.max_rss
    report.minor_faults = run.minor_faults
    report.major_faults = run.major_faults
    report.notes.extend(run.notes)
    wrappers = getattr(recording, "wrappers", None) or []
    if wrappers:
        report.notes.append("recorded the program the command exec'd (pid "
                            f"{report.pid}), through " + " -> ".join(
                                _command_text(w[:2]) for w in wrappers))
    if recording.others:
        report.notes.append(f"{len(recording.others)} other process(es) the command started "
                            "were recorded too; this report is of the command's own")
    report.sites_missing = ""
    try:
        report.site_rows = site_rows_of(recording.sites())
    except tracing.TraceError as error:        # recorded with stacks=off, or the old form
        report.sites_missing = str(error)
    if report.site_rows is not None and not report.site_rows:
        report.sites_missing = "the recorder found no call stacks"
    if report.site_rows and any(getattr(s, "sampled", False) for s in recording.sites()):
        report.notes.append("call sites are sampled by bytes allocated (stacks=sampled): "
                            "their numbers are estimates; stacks='all' records every one")
    try:
        report.timeline = list(recording.timeline) or None
    except tracing.TraceError:
        report.timeline = None
    return report


def report(cmd, allocators=None, repeat=3, options=None, env=None, timeout=None,
           capture=True, stacks=None, snapshots=heapmaps.SNAPSHOTS):
    """Run ``cmd`` (a list, or a string split like a shell would) on pymalloc_real,
    recording its allocation calls, and return its :class:`Report`. ``allocators``
    (names such as ``glibc``, ``jemalloc``, or library paths) also runs it ``repeat``
    times on each of those and on ours, interleaved, for the comparison. ``options`` go
    to our library (``PYMALLOC_REAL_OPTIONS``); ``capture`` keeps the command's output
    (False lets it through); ``stacks`` is the recorder's: "sampled" (its default, by
    bytes allocated: cheap, the sites' numbers estimated), "all" (every allocation's
    stack: exact) or "off". Raises TraceError, saying why, when nothing was recorded."""
    _require_libraries()            # before the run, not after it
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(arg) for arg in cmd]
    if not argv:
        raise ReportError("no command to run")
    if not isinstance(repeat, int) or repeat < 1:
        raise ReportError(f"repeat must be a positive number of runs, not {repeat!r}")
    for name in allocators or ():
        try:
            preload.resolve(name)       # an unknown name fails now, not after the run
        except preload.LibraryMissing:
            pass                        # reported as missing in the comparison
    recording = tracing.record_run(argv, options=options, env=env, timeout=timeout,
                                   capture=capture, stacks=stacks)
    result = from_recording(recording, snapshots=snapshots)
    if allocators:
        names = [preload.OURS] + [a for a in allocators if a != preload.OURS]
        result.comparison = preload.compare(argv, allocators=names, repeat=repeat,
                                            options=options, env=env, timeout=timeout,
                                            check_stdout=False)
        result.notes.extend(result.comparison.notes)
    return result


def _require_libraries():
    """numpy and plotly come with the ``report`` extra; say so rather than fail later."""
    missing = []
    for name in ("numpy", "plotly"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ReportError(f"the report needs {' and '.join(missing)}: "
                          "pip install 'pymalloc_real[report]'")


def _command_text(cmd):
    return cmd if isinstance(cmd, str) else " ".join(shlex.quote(str(a)) for a in cmd)
