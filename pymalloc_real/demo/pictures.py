"""Pictures of the demo's steps, drawn with matplotlib: for each step, its address-space
diagram and, where the step counted something, a small chart, in one PNG.

Imported only for ``pymalloc-real demo --plot``, so matplotlib stays an optional
dependency. It draws on ``matplotlib.figure.Figure`` directly (the Agg canvas), never
through pyplot, so it sets no global backend and opens no window.
"""
import os

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import charts
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
        # The chart is what the step measured: it gets the larger part; the diagram
        # beside it names each band in text next to a narrow box, so no label overflows.
        grid = figure.add_gridspec(1, 2, width_ratios=(2, 3))
        _draw_space(figure.add_subplot(grid[0]), step, label_width=48)
        _draw_chart(figure.add_subplot(grid[1]), step.chart)
    else:
        _draw_space(figure.add_subplot(), step, label_width=110)
    figure.suptitle(f"Step {step.number}: {step.title} \u2014 {step.verdict}", fontsize=14,
                    color=_VERDICT_COLOURS.get(step.verdict, "black"))
    return figure


# Where the diagram's columns start, as fractions of its panel: the area's name, the
# band's box, then its text (label and size, address range, notes).
_AREA_X, _BOX_X, _BOX_WIDTH, _TEXT_X = 0.0, 0.2, 0.07, 0.3
_FONT_SIZE = 8.5


def _draw_space(ax, step, label_width):
    """The diagram as stacked boxes, high addresses on top, one box per band (not to
    scale: the address space spans terabytes, the heap a few megabytes). Each band's
    text stands beside its box, at most ``label_width`` characters a line."""
    ax.set_axis_off()
    ax.set_title(f"address space, high addresses on top: {step.moment}", fontsize=10,
                 loc="left", wrap=True)
    heights = [0.6 if band.kind == "gap" else 1.0 for band in step.space]
    # As many text lines as a band's height holds at 8.5 points (the panel is about
    # 6.5 inches tall): with many bands, the label and the first note only.
    points = 6.5 * 72 / max(sum(heights), 1)
    most_lines = max(1, int(points * 0.95 / (_FONT_SIZE * 1.2)))
    y, area = 0.0, None
    for band, height in zip(step.space, heights):
        gap = band.kind == "gap"
        ax.add_patch(Rectangle((_BOX_X, y), _BOX_WIDTH, height * 0.9,
                               facecolor=_COLOURS.get(band.kind, "#d9d9d9"),
                               edgecolor="#555555", hatch="///" if gap else None,
                               linewidth=0.6))
        if band.area and band.area != area:
            ax.text(_AREA_X, y + 0.45 * height, _AREAS[band.area], fontsize=10,
                    weight="bold", va="center")
            area = band.area
        size = size_text(band.end - band.start if gap else band.mapped)
        lines = [_short(f"{band.label}, {size}", label_width)]
        lines += [_short(note, label_width) for note in band.notes[:2]]
        if not gap:
            lines.insert(1 if len(lines) < most_lines else len(lines),
                         f"{band.start:x}-{band.end:x}")
        ax.text(_TEXT_X, y + 0.45 * height, "\n".join(lines[:most_lines]),
                fontsize=_FONT_SIZE, va="center", linespacing=1.15)
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
            ax.bar_label(bars, fmt=charts.count_text, fontsize=8)
        _category_ticks(ax, chart.categories)
    charts.plain_numbers(ax, "y")       # 8,192, never 8.19e+03
    if len(names) > 1:
        ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def _category_ticks(ax, categories):
    ax.set_xticks(range(len(categories)))
    rotate = max((len(c) for c in categories), default=0) > 8
    ax.set_xticklabels(categories, rotation=30 if rotate else 0, ha="right" if rotate else "center",
                       fontsize=8)
