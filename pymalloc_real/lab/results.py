"""What a replay gives: the footprint samples over time (``Sample``), one policy's result
(``ReplayResult``) and several side by side (``Comparison``, a table and its text).
"""


import dataclasses
from ..reprs import readable

from .. import charts


# ---- results -----------------------------------------------------------------------------------

@readable
@dataclasses.dataclass(frozen=True)
class Sample:
    """One point of a replay's time series, after ``op`` ops. free_total and
    free_largest are None for ptmalloc and glibc."""
    op: int
    footprint: int
    live_bytes: int
    usable_bytes: int
    free_total: object
    free_largest: object

    @property
    def external_fragmentation(self):
        """1 - largest free / total free (0 with nothing free; None when unknown)."""
        if self.free_total is None:
            return None
        return 1 - self.free_largest / self.free_total if self.free_total else 0.0


@readable
@dataclasses.dataclass
class ReplayResult:
    """What one replay measured.

    ``peak_footprint``: the most bytes the policy held from the OS (region policies: the
    high-water mark of their region and side tables, which never shrinks; ptmalloc and
    glibc: their heap and mmapped bytes beyond what they held before, at the samples).
    ``peak_live``: the most requested bytes live at once; ``internal_at_peak``: usable
    minus requested bytes at that moment. ``external_fragmentation`` is 1 - largest free /
    total free below the high-water mark, averaged over the samples (``_max`` the worst).
    ``failed``: requests the policy refused (its region full, a bitmap request above the
    block size); ``skipped_frees``: frees and reallocs of objects whose malloc failed.
    ``elapsed_ns``: the loop (with the pattern checks when ``verified``), sampling taken
    out; ``loop_ns_per_op``: the loop alone (the null policy), filled by :func:`replay`
    with ``baseline=True``. ``timed_out``: a time limit stopped the run after ``ops`` of
    ``trace_ops`` ops (every figure then covers only those).
    """
    policy: str
    ops: int
    mallocs: int
    frees: int
    reallocs: int
    failed: int
    skipped_frees: int
    peak_footprint: int
    final_footprint: int
    peak_live: int
    internal_at_peak: int
    peak_internal: int
    elapsed_ns: int
    minor_faults: int
    major_faults: int
    verified: bool
    series: list = dataclasses.field(repr=False, default_factory=list)
    loop_ns_per_op: object = None
    timed_out: bool = False
    trace_ops: int = 0

    @property
    def ns_per_op(self):
        return self.elapsed_ns / self.ops if self.ops else 0.0

    @property
    def policy_ns_per_op(self):
        """ns per op minus the loop's own (None without a baseline)."""
        if self.loop_ns_per_op is None:
            return None
        return max(0.0, self.ns_per_op - self.loop_ns_per_op)

    def _fragments(self):
        return [f for f in (s.external_fragmentation for s in self.series) if f is not None]

    @property
    def external_fragmentation(self):
        values = self._fragments()
        return sum(values) / len(values) if values else None

    @property
    def external_fragmentation_max(self):
        values = self._fragments()
        return max(values) if values else None

    @property
    def overhead(self):
        """peak footprint / peak live (1.0 is perfect)."""
        return self.peak_footprint / self.peak_live if self.peak_live else None

    def as_dict(self):
        out = dataclasses.asdict(self)
        out.update(ns_per_op=self.ns_per_op, policy_ns_per_op=self.policy_ns_per_op,
                   external_fragmentation=self.external_fragmentation,
                   external_fragmentation_max=self.external_fragmentation_max,
                   overhead=self.overhead)
        return out


def _size(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@readable
@dataclasses.dataclass
class Comparison:
    """The replays of one trace under several policies: :meth:`as_table` (Markdown),
    :meth:`as_dict`, :meth:`plot` (footprint over time)."""
    results: list
    n_ops: int
    loop_ns_per_op: float
    description: str = ""

    def __getitem__(self, policy):
        for r in self.results:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    def as_table(self):
        rows = ["| policy | peak footprint | / peak live | internal frag. at peak | "
                "external frag. mean / max | failed | ns/op | minor faults |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            ext = ("n/a" if r.external_fragmentation is None else
                   f"{r.external_fragmentation:.2f} / {r.external_fragmentation_max:.2f}")
            over = f"{r.overhead:.2f}x" if r.overhead else "-"
            name = (f"{r.policy} (stopped by the time limit after {r.ops:,} of "
                    f"{r.trace_ops:,} ops)" if r.timed_out else r.policy)
            rows.append(f"| {name} | {_size(r.peak_footprint)} | {over} | "
                        f"{_size(r.internal_at_peak)} | {ext} | {r.failed:,} | "
                        f"{r.ns_per_op:.0f} | {r.minor_faults:,} |")
        return "\n".join(rows)

    def as_dict(self):
        return {"ops": self.n_ops, "loop_ns_per_op": self.loop_ns_per_op,
                "results": [r.as_dict() for r in self.results]}

    def plot(self, path, title=None):
        """Footprint over time per policy (and the live bytes) into a PNG; returns the
        path. Needs matplotlib."""
        figure = self.figure(title)
        figure.savefig(path, dpi=110)
        return path

    def figure(self, title=None):
        """The chart of :meth:`plot` as a matplotlib Figure. Policies whose footprints
        coincide (the buddy and the pooled buddy often do) keep markers of their own,
        set apart, and say "= other" in the legend."""
        from matplotlib.figure import Figure     # optional dependency: only when plotting
        import matplotlib
        palette = matplotlib.colormaps["tab20"].colors
        figure = Figure(figsize=(10, 5.5))
        ax = figure.add_subplot()
        curves = {r.policy: [s.footprint for s in r.series] for r in self.results}
        same = charts.coinciding(curves)
        for n, r in enumerate(self.results):
            label = r.policy + (f" (stopped at {r.ops:,})" if r.timed_out else "")
            real = r.policy in ("ptmalloc", "glibc")
            style = charts.curve_style(n, len(self.results), len(r.series), same.get(r.policy))
            style.setdefault("linestyle", ":" if real else "-")
            ax.plot([s.op for s in r.series], [s.footprint / 2 ** 20 for s in r.series],
                    label=charts.same_label(label, same.get(r.policy)),
                    color=palette[(2 * n) % 20 + (n >= 10)],
                    linewidth=2.2 if real else 1.3, **style)
        # The live bytes are the trace's, the same under every policy that took every
        # request: drawn from the longest run.
        longest = max(self.results, key=lambda r: (r.ops, -r.failed), default=None)
        if longest and longest.series:
            ax.plot([s.op for s in longest.series],
                    [s.live_bytes / 2 ** 20 for s in longest.series],
                    color="black", linestyle="--", linewidth=1.5, label="live (requested)")
        ax.set_xlabel("operations")
        ax.set_ylabel("footprint (MiB)")
        ax.set_title(title or f"Footprint over time{': ' + self.description if self.description else ''}")
        charts.plain_numbers(ax, "xy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
        figure.tight_layout()
        return figure
