"""What every chart of the package shares (the demo's pictures, the benchmark chart,
the lab's footprint chart and region picture, the page-replacement curves): numbers
written as people write them (8,192, never 8.19e+03), and curves that stay visible
when they coincide (a marker of their own, placed apart, and "= other" in the legend).

Nothing here imports matplotlib at import time: the callers already hold its objects.
"""


__all__ = ["MARKERS", "count_text", "plain_numbers", "coinciding", "curve_style",
           "same_label"]

# Distinct markers, one per curve in turn: a curve hidden under another still shows its own.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h", "p")

_MARKS_PER_CURVE = 12       # markers drawn along each curve, at most


def count_text(value, _position=None):
    """A number for people: thousands separated, never scientific notation (1,024;
    0.25; 12.5)."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def plain_numbers(ax, axes="y"):
    """Label the linear axes named in ``axes`` ("x", "y" or "xy") of ``ax`` with
    count_text: no "1e6" offset, no 8.19e+03. Log axes keep matplotlib's powers."""
    from matplotlib.ticker import FuncFormatter
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if axis.get_scale() == "linear":
            axis.set_major_formatter(FuncFormatter(count_text))


def coinciding(series):
    """For {name: values} in drawing order: {name: the earlier name whose values are
    the same} for each curve another one hides (absent when it hides under none)."""
    seen, same = {}, {}
    for name, values in series.items():
        key = tuple(values)
        if key in seen:
            same[name] = seen[key]
        else:
            seen[key] = name
    return same


def curve_style(index, count, points, same_as=None):
    """Keyword arguments for ``ax.plot`` of curve ``index`` of ``count`` with
    ``points`` points: its own marker, the markers of curves spread apart along x (so
    curves on top of each other all show theirs), a dashed line when it lies under an
    earlier curve ``same_as``."""
    # Every curve marks one point in `every`, each from its own start: no two curves
    # put a marker at the same x.
    every = max(count, points // _MARKS_PER_CURVE, 1)
    style = {"marker": MARKERS[index % len(MARKERS)], "markersize": 5,
             "markevery": (min(index, max(points - 1, 0)), every)}
    if same_as is not None:
        style["linestyle"] = (index % 4, (4, 3))     # dashed, its dashes offset too
    return style


def same_label(name, same_as):
    """The legend label of a curve, saying which one it coincides with."""
    return name if same_as is None else f"{name} (= {same_as})"
