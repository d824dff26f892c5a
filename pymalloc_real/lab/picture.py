"""A policy's region drawn at a chosen moment of a trace: used, free and metadata cells,
as text or (with matplotlib) a PNG.
"""



from .. import charts
from .packing import REGION_POLICIES, LabError
from .policy import Policy
from .results import _size


# ---- pictures ----------------------------------------------------------------------------------

_CELL = {"used": "#", "free": ".", "meta": "m"}


def picture(trace, policy, at_op=None, width=100, path=None, **params):
    """A policy's region after ``at_op`` ops of ``trace`` (default: all) as text: one
    character per equal slice of the used part of the region (up to the high-water
    mark), ``#`` used, ``.`` free, ``+`` both, ``m`` the policy's bookkeeping; then a
    line of totals. With ``path``, also a PNG of the blocks along the address line."""
    if policy not in REGION_POLICIES:
        raise LabError(f"{policy} has no region of the lab's to draw; pick one of "
                       f"{', '.join(REGION_POLICIES)}")
    if not isinstance(width, int) or width < 10:
        raise LabError(f"width must be at least 10 characters, not {width!r}")
    with Policy(policy, **params) as p:
        p.replay(trace, verify=True, stop_after=at_op, free_remaining=False)
        blocks = p.walk()
        stats = p.stats()
    base = stats["region_base"]
    shown = [b for b in blocks if b.kind != "untouched"]
    end = max((b.span_start + b.span_size for b in shown), default=base)
    extent = max(end - base, 1)
    cells = [dict() for _ in range(width)]
    for b in shown:
        start, stop = b.span_start - base, b.span_start - base + b.span_size
        first, last = start * width // extent, min(width - 1, (stop - 1) * width // extent)
        for c in range(first, last + 1):
            lo, hi = max(start, c * extent / width), min(stop, (c + 1) * extent / width)
            cells[c][b.kind] = cells[c].get(b.kind, 0) + max(0.0, hi - lo)
    line = []
    for cell in cells:
        kinds = [k for k, v in cell.items() if v > 0]
        if not kinds:
            line.append(" ")
        elif "used" in kinds and "free" in kinds:
            line.append("+")
        else:
            line.append(_CELL[max(kinds, key=lambda k: cell[k])])
    used = [b for b in blocks if b.kind == "used"]
    free = [b for b in blocks if b.kind == "free"]
    moment = f"after {at_op:,} ops" if at_op else "at the end of the trace"
    text = (f"{policy} {moment}: {_size(extent)} from {base:#x} ({extent / width:.0f} B per "
            f"character)\n|{''.join(line)}|\n"
            f"{len(used):,} used blocks ({_size(sum(b.size for b in used))}), "
            f"{len(free):,} free ({_size(sum(b.span_size for b in free))}, largest "
            f"{_size(max((b.span_size for b in free), default=0))}); footprint "
            f"{_size(stats['footprint'])}")
    if path:
        _draw_picture(path, policy, moment, blocks, base, extent)
    return text


def _draw_picture(path, policy, moment, blocks, base, extent):
    from matplotlib.figure import Figure
    figure = Figure(figsize=(12, 2.2))
    ax = figure.add_subplot()
    colors = {"used": "#d9534f", "free": "#5cb85c", "meta": "#777777"}
    for kind, color in colors.items():
        spans = [((b.span_start - base) / 1024, b.span_size / 1024)
                 for b in blocks if b.kind == kind and b.span_start - base < extent]
        if spans:
            ax.broken_barh(spans, (0, 1), facecolors=color, edgecolor="white",
                           linewidth=0.2, label=kind)
    ax.set_xlim(0, extent / 1024)
    charts.plain_numbers(ax, "x")
    ax.set_yticks([])
    ax.set_xlabel("offset in the region (KiB)")
    ax.set_title(f"{policy} {moment}")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
