"""Pictures of the demo's steps, drawn with matplotlib: for each step, its address-space
diagram and, where the step counted something, a small chart, in one PNG.

Imported only for ``pymalloc-real demo --plot``, so matplotlib stays an optional
dependency. It draws on ``matplotlib.figure.Figure`` directly (the Agg canvas), never
through pyplot, so it sets no global backend and opens no window.
"""
import os

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..kernel.space import size_text

__all__ = ["write_pictures", "picture_name"]

_COLOURS = {"heap": "#f4a261", "stack": "#2a9d8f", "anonymous": "#a8dadc",
            "file": "#cdb4db", "vdso": "#e9c46a", "other": "#d9d9d9",
            "several": "#eeeeee", "gap": "#ffffff"}
_VERDICT_COLOURS = {"agrees": "#1b7f3b", "DISAGREES": "#b00020", "n/a": "#666666"}
_SERIES_COLOURS = ["#264653", "#e76f51", "#2a9d8f", "#e9c46a"]
_AREAS = {"stack": "stack", "mapping": "mmap area", "heap": "heap", "program": "program"}


def picture_name(step):
    return f"step{step.number}_{step.slug}.png"


def write_pictures(steps, directory):
    """Write one PNG per step into ``directory`` (created if missing); return the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for step in steps:
        path = os.path.join(directory, picture_name(step))
        _figure(step).savefig(path, dpi=100)
        paths.append(path)
    return paths


def _figure(step):
    figure = Figure(figsize=(13, 7.5), layout="constrained")
    if step.chart is not None:
        grid = figure.add_gridspec(1, 2, width_ratios=(3, 2))
        _draw_space(figure.add_subplot(grid[0]), step)
        _draw_chart(figure.add_subplot(grid[1]), step.chart)
    else:
        _draw_space(figure.add_subplot(), step)
    figure.suptitle(f"Step {step.number}: {step.title} \u2014 {step.verdict}", fontsize=14,
                    color=_VERDICT_COLOURS.get(step.verdict, "black"))
    return figure


def _draw_space(ax, step):
    """The diagram as stacked boxes, high addresses on top, one box per band (not to
    scale: the address space spans terabytes, the heap a few megabytes)."""
    ax.set_axis_off()
    ax.set_title(f"address space, high addresses on top: {step.moment}", fontsize=9, loc="left")
    bands = step.space
    y, area = 0.0, None
    for band in bands:
        height = 0.5 if band.kind == "gap" else 1.0
        ax.add_patch(Rectangle((0.35, y), 0.2, height * 0.9,
                               facecolor=_COLOURS.get(band.kind, "#d9d9d9"), edgecolor="#555555",
                               hatch="///" if band.kind == "gap" else None, linewidth=0.6))
        if band.area and band.area != area:
            ax.text(0.0, y + 0.45, _AREAS[band.area], fontsize=9, weight="bold", va="center")
            area = band.area
        size = size_text(band.end - band.start if band.kind == "gap" else band.mapped)
        ax.text(0.34, y + 0.45 * height, f"{band.start:x}-{band.end:x}", fontsize=7,
                ha="right", va="center", family="monospace")
        ax.text(0.45, y + 0.45 * height, _short(f"{band.label} {size}", 30), fontsize=7,
                ha="center", va="center")
        if band.notes:
            ax.text(0.56, y + 0.45 * height, "\n".join(_short(n, 60) for n in band.notes),
                    fontsize=6.5, va="center", family="monospace")
        y += height
    ax.set_xlim(0, 1)
    ax.set_ylim(max(y, 1), 0)


def _short(text, width):
    return text if len(text) <= width else text[:width - 3] + "..."


def _draw_chart(ax, chart):
    ax.set_title(chart.title, fontsize=10)
    ax.set_xlabel(chart.xlabel)
    ax.set_ylabel(chart.ylabel)
    names = list(chart.series)
    if chart.kind == "scatter":
        for i, name in enumerate(names):
            values = chart.series[name]
            ax.plot(range(len(values)), values, "o", markersize=3,
                    color=_SERIES_COLOURS[i % len(_SERIES_COLOURS)], label=name)
    elif chart.kind == "line":
        positions = range(len(chart.categories))
        for i, name in enumerate(names):
            ax.plot(positions, chart.series[name], "o-", color=_SERIES_COLOURS[i % 4], label=name)
        _category_ticks(ax, chart.categories)
    else:
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            positions = [c + (i - (len(names) - 1) / 2) * width
                         for c in range(len(chart.categories))]
            bars = ax.bar(positions, chart.series[name], width, color=_SERIES_COLOURS[i % 4],
                          label=name)
            ax.bar_label(bars, fmt="%.3g", fontsize=7)
        _category_ticks(ax, chart.categories)
    if len(names) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _category_ticks(ax, categories):
    ax.set_xticks(range(len(categories)))
    rotate = max((len(c) for c in categories), default=0) > 8
    ax.set_xticklabels(categories, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8)
