"""The files a benchmark run leaves in its output directory: results.json (everything,
as plain data), results.md (the tables for people) and results.png (ratios to glibc as
grouped bars, drawn with matplotlib's Agg canvas, imported only then).
"""


import json
import os

from .. import charts
from ..preload import GLIBC, OURS
from .results import MIMALLOC, RESULT_FILES


# ---- the files ---------------------------------------------------------------------------------

def write_results(result, out_dir):
    """Write results.json, results.md and (with matplotlib) results.png into
    ``out_dir`` (created if missing); return {file name: path}."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in RESULT_FILES}
    try:
        draw_chart(result, paths["results.png"])
    except ImportError:
        result.notes.append("no chart: matplotlib is not installed "
                            "(pip install 'pymalloc_real[plot]')")
        del paths["results.png"]
    result.files = paths
    with open(paths["results.json"], "w", encoding="utf-8") as f:
        json.dump(result.as_dict(), f, indent=2)
        f.write("\n")
    with open(paths["results.md"], "w", encoding="utf-8") as f:
        f.write(result.markdown())
    return paths


# ---- results.png -----------------------------------------------------------------------------

_COLOURS = {GLIBC: "#8d99ae", OURS: "#e76f51", "jemalloc": "#2a9d8f", MIMALLOC: "#264653",
            "tcmalloc": "#e9c46a"}


def draw_chart(result, path):
    """Write chart_figure(result) into ``path``. Raises ImportError without matplotlib."""
    chart_figure(result).savefig(path)


def chart_figure(result):
    """Grouped bars: each workload's wall time (top) and peak RSS (bottom) as a ratio to
    glibc, one bar per allocator, with the line at 1.0 and min-max error bars (each
    run's extremes over glibc's median: the README calls ratios within 10% noise, and
    the bars show how wide the noise was). Raises ImportError without matplotlib. Draws
    on a Figure (the Agg canvas), never through pyplot."""
    from matplotlib.figure import Figure
    figure = Figure(figsize=(12, 8), dpi=100)
    names = [name for name in result.allocators if name != GLIBC] or result.allocators
    panels = (("wall_time", "wall time / glibc (lower is faster)"),
              ("max_rss", "peak RSS / glibc (lower is smaller)"))
    for index, (metric, label) in enumerate(panels):
        axes = figure.add_subplot(2, 1, index + 1)
        _bars(axes, result, names, metric)
        axes.axhline(1.0, color="black", linewidth=1, linestyle="--")
        axes.set_ylabel(label)
        charts.plain_numbers(axes, "y")
        axes.grid(axis="y", alpha=0.3)
    figure.axes[0].legend(loc="upper left", ncol=len(names), fontsize="small")
    figure.suptitle(f"pymalloc-real bench, {result.date[:10]}: ratios of medians to glibc "
                    f"({result.settings['repeat']} runs each; whiskers: fastest and slowest "
                    "run)")
    figure.tight_layout()
    return figure


def _bars(axes, result, names, metric):
    workloads = [w.name for w in result.workloads]
    width = 0.8 / max(len(names), 1)
    for slot, name in enumerate(names):
        values = [w.ratio(name, metric) or 0.0 for w in result.workloads]
        low, high = zip(*(_ratio_range(w, name, metric) or (v, v)
                          for w, v in zip(result.workloads, values))) if values else ((), ())
        positions = [i - 0.4 + width * (slot + 0.5) for i in range(len(workloads))]
        axes.bar(positions, values, width, label=name, color=_COLOURS.get(name),
                 yerr=[[v - lo for v, lo in zip(values, low)],
                       [hi - v for v, hi in zip(values, high)]],
                 error_kw={"elinewidth": 1, "capsize": 2, "ecolor": "#333333"})
    axes.set_xticks(range(len(workloads)))
    axes.set_xticklabels(workloads)
    axes.set_xlim(-0.6, len(workloads) - 0.4)


def _ratio_range(workload, allocator, metric):
    """(lowest, highest) run of ``allocator`` over glibc's median, or None."""
    mine, glibc = workload.cells.get(allocator), workload.cells.get(GLIBC)
    if not mine or not glibc or metric not in mine.metrics or metric not in glibc.metrics:
        return None
    base = glibc.metrics[metric].median
    if not base:
        return None
    spread = mine.metrics[metric]
    return spread.low / base, spread.high / base
