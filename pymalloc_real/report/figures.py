"""The report's charts, as plotly figures (plotly draws them in the page; see README's
*The report* for why plotly): the timeline, size classes, the call-site icicle, the
fragmentation over time, the heap map's first frame and the comparison with the peers.
Each function takes the Report's parts and returns a ``plotly.graph_objects.Figure``;
nothing here writes HTML (``page`` does).
"""


from .heapmap import CODE_USED, FREE_PLACES
from .sites import METRICS, tree

_MiB = 1024 * 1024

# One colour per quantity, the same in every chart.
COLOURS = {"live": "#1d3557", "heap": "#e76f51", "mapped": "#2a9d8f", "rss": "#8d99ae",
           "overhead": "#adb5bd", "fast": "#f4a261", "unsorted": "#e9c46a",
           "small": "#ffb4a2", "large": "#cdb4db", "top": "#b7e4c7", "minflt": "#457b9d",
           "majflt": "#d62828"}

# Levels of the icicle shown at once (click a frame to go deeper): CPython's stacks are
# forty frames deep.
ICICLE_DEPTH = 12

# The heap map's codes (heapmap.CODE_*): 0 not held, 1 top, 2 free .. 12 in use.
HEAP_COLOURS = ["#f1f3f5", "#b7e4c7"] + [
    f"rgb({int(244 + (29 - 244) * k / 10)},{int(162 + (53 - 162) * k / 10)},"
    f"{int(97 + (87 - 97) * k / 10)})" for k in range(11)]


def _go():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    return go, make_subplots


def _layout(fig, title, height=420):
    fig.update_layout(title=dict(text=title, x=0.01), height=height, template="plotly_white",
                      margin=dict(l=60, r=20, t=80 if title else 50, b=40),
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"))
    return fig


def timeline(timeline_samples, measures, heapmap):
    """Live, heap, mmapped and RSS over time, faults below, events marked, with a range
    slider to zoom. Without the recorder's timeline (``timeline_samples`` None or
    empty), the same over operations, from the trace and its replay through our core."""
    go, make_subplots = _go()
    if timeline_samples:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                            vertical_spacing=0.06)
        t0 = timeline_samples[0].t_ns
        x = [(s.t_ns - t0) / 1e9 for s in timeline_samples]
        for name in ("live", "heap", "mmapped", "rss"):
            fig.add_trace(go.Scatter(x=x, y=[getattr(s, name) / _MiB for s in timeline_samples],
                                     name=f"{name} (MiB)", mode="lines",
                                     line=dict(color=COLOURS.get(name, COLOURS["mapped"]))),
                          row=1, col=1)
        for name in ("minflt", "majflt"):
            fig.add_trace(go.Scatter(x=x, y=[getattr(s, name) for s in timeline_samples],
                                     name=name, mode="lines", line=dict(color=COLOURS[name])),
                          row=2, col=1)
        events = [(xi, s) for xi, s in zip(x, timeline_samples) if getattr(s, "event", None)]
        if events:
            fig.add_trace(go.Scatter(x=[e[0] for e in events],
                                     y=[e[1].heap / _MiB for e in events], mode="markers",
                                     name="events", text=[str(e[1].event) for e in events],
                                     marker=dict(symbol="triangle-up", size=7, color="#000"),
                                     hovertemplate="%{text} at %{x:.4f} s<extra></extra>"),
                          row=1, col=1)
        fig.update_xaxes(title_text="seconds", rangeslider=dict(visible=True, thickness=0.06),
                         row=2, col=1)
        fig.update_yaxes(title_text="MiB", row=1, col=1)
        fig.update_yaxes(title_text="faults so far", row=2, col=1)
        return _layout(fig, "", 520)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=measures.series_op, y=[v / _MiB for v in measures.series_live],
                             name="live (MiB)", mode="lines", line=dict(color=COLOURS["live"])))
    if heapmap is not None:
        for name, values in (("heap", heapmap.series_heap), ("mapped", heapmap.series_mapped)):
            fig.add_trace(go.Scatter(x=heapmap.series_op, y=[v / _MiB for v in values],
                                     name=f"{name} (MiB, replayed)", mode="lines",
                                     line=dict(color=COLOURS[name])))
    fig.update_xaxes(title_text="operations", rangeslider=dict(visible=True, thickness=0.06))
    fig.update_yaxes(title_text="MiB")
    return _layout(fig, "Timeline (over operations: the recorder gave no timeline)")


def size_classes(measures):
    """Requests per power-of-two size class: how many, and how many bytes."""
    go, make_subplots = _go()
    labels = [f"≤{_size(c.limit)}" for c in measures.size_classes]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("requests", "bytes requested"))
    fig.add_trace(go.Bar(x=labels, y=[c.count for c in measures.size_classes], name="requests",
                         marker_color=COLOURS["live"]), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=[c.bytes for c in measures.size_classes], name="bytes",
                         marker_color=COLOURS["heap"]), row=1, col=2)
    fig.update_layout(showlegend=False)
    return _layout(fig, "", 360)


def sites_icicle(site_rows):
    """The call stacks as an icicle (outermost frame on top), one per metric, with
    buttons to switch."""
    go, _ = _go()
    fig = go.Figure()
    buttons = []
    for number, (metric, label) in enumerate(METRICS):
        ids, labels, parents, values = tree(site_rows, metric)
        fig.add_trace(go.Icicle(ids=ids, labels=labels, parents=parents, values=values,
                                branchvalues="total", name=label, visible=number == 0,
                                maxdepth=ICICLE_DEPTH,
                                tiling=dict(orientation="v"), root=dict(color="#f8f9fa"),
                                hovertemplate="%{label}<br>" + label + ": %{value:,}"
                                              "<extra></extra>"))
        buttons.append(dict(label=f"by {label}", method="update",
                            args=[{"visible": [k == number for k in range(len(METRICS))]}]))
    fig.update_layout(updatemenus=[dict(type="buttons", direction="right", x=0.99, y=1.12,
                                        xanchor="right", buttons=buttons)])
    return _layout(fig, "Call stacks (icicle: outermost frame on top)", 520)


def fragmentation(heapmap, live):
    """Footprint over live bytes over time, and where the footprint's bytes are at each
    snapshot: live, overhead (headers, rounding, mapped pages), free in each kind of bin,
    free in top."""
    go, make_subplots = _go()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.4, 0.6],
                        vertical_spacing=0.08,
                        subplot_titles=("footprint / live bytes (where live is at least "
                                        "1% of its peak)", "where the footprint is"))
    ratio_x, ratio_y = [], []
    # Where almost nothing is live (start-up, the end) the ratio says nothing but swamps
    # the scale: points below 1% of the peak are left out.
    least = max(1, int(live.max()) // 100) if len(live) else 1
    for op, heap, mapped in zip(heapmap.series_op, heapmap.series_heap, heapmap.series_mapped):
        held_live = int(live[op - 1]) if op else 0
        if held_live >= least:
            ratio_x.append(op)
            ratio_y.append((heap + mapped) / held_live)
    fig.add_trace(go.Scatter(x=ratio_x, y=ratio_y, name="footprint / live", mode="lines",
                             line=dict(color=COLOURS["heap"])), row=1, col=1)
    lives = [int(live[op - 1]) if op else 0 for op in heapmap.ops]
    free_total = [sum(heapmap.free[name][i] for name in FREE_PLACES)
                  for i in range(len(heapmap.ops))]
    overhead = [max(0, heap + mapped - lv - free) for heap, mapped, lv, free in
                zip(heapmap.heap_bytes, heapmap.mapped_bytes, lives, free_total)]
    for name, values in [("live", lives), ("overhead", overhead)] + \
            [(name, heapmap.free[name]) for name in FREE_PLACES]:
        label = name if name in ("live", "overhead") else f"free: {name}"
        fig.add_trace(go.Scatter(x=heapmap.ops, y=[v / _MiB for v in values], name=label,
                                 stackgroup="where", mode="lines",
                                 line=dict(width=0.5, color=COLOURS[name])), row=2, col=1)
    fig.update_xaxes(title_text="operations", row=2, col=1)
    fig.update_yaxes(title_text="MiB", row=2, col=1)
    return _layout(fig, "", 560)


def heap_map(heapmap, frame, rows_of_codes):
    """The heap map at snapshot ``frame`` (its codes as a list of rows), the break marked,
    and the mapped chunks beside it; page.py's slider restyles it."""
    go, make_subplots = _go()
    fig = make_subplots(rows=1, cols=2, column_widths=[0.8, 0.2], horizontal_spacing=0.06,
                        subplot_titles=("main heap (segments end to end)", "mapped chunks"))
    stops = len(HEAP_COLOURS)
    scale = []
    for k, colour in enumerate(HEAP_COLOURS):
        scale += [[k / stops, colour], [(k + 1) / stops, colour]]
    fig.add_trace(go.Heatmap(z=rows_of_codes, zmin=-0.5, zmax=CODE_USED + 0.5,
                             colorscale=scale, xgap=1, ygap=1, name="heap",
                             colorbar=dict(title="", tickvals=[0, 1, 2, 7, 12],
                                           ticktext=["not held", "top", "free",
                                                     "half in use", "in use"],
                                           orientation="h", x=0.4, xanchor="center",
                                           y=-0.02, yanchor="top", len=0.7, thickness=12),
                             hovertemplate="row %{y}, cell %{x}: code %{z}<extra></extra>"),
                  row=1, col=1)
    cell = heapmap.break_cells[frame]
    fig.add_trace(go.Scatter(x=[cell % heapmap.columns] if cell >= 0 else [],
                             y=[cell // heapmap.columns] if cell >= 0 else [], mode="markers",
                             name="break", marker=dict(symbol="x", size=12, color="#d62828"),
                             hovertemplate="the program break<extra></extra>"), row=1, col=1)
    mapped = heapmap.mapped[frame]
    fig.add_trace(go.Bar(x=list(range(len(mapped))), y=[m / 1024 for m in mapped],
                         name="mapped (KiB)", marker_color=COLOURS["mapped"],
                         hovertemplate="%{y:,.0f} KiB<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed", showticklabels=False, row=1, col=1)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(title_text="KiB", row=1, col=2)
    fig.update_layout(showlegend=False)
    return _layout(fig, "", max(340, min(760, 180 + 9 * heapmap.rows)))


def comparison(comparison_result):
    """Wall time, peak RSS and minor faults (medians) per allocator."""
    go, make_subplots = _go()
    fig = make_subplots(rows=1, cols=3, subplot_titles=("wall time (s)", "peak RSS (MiB)",
                                                        "minor faults"))
    present = [r for r in comparison_result.allocators if not r.missing and r.metrics]
    names = [r.name for r in present]
    for col, (metric, scale) in enumerate((("wall_time", 1), ("max_rss", _MiB),
                                           ("minor_faults", 1)), 1):
        fig.add_trace(go.Bar(x=names, y=[r.metrics[metric].median / scale for r in present],
                             marker_color=[COLOURS["heap"] if n == "pymalloc_real" else
                                           COLOURS["rss"] for n in names],
                             error_y=dict(type="data", symmetric=False,
                                          array=[(r.metrics[metric].high - r.metrics[metric].median)
                                                 / scale for r in present],
                                          arrayminus=[(r.metrics[metric].median - r.metrics[metric].low)
                                                      / scale for r in present])),
                      row=1, col=col)
    fig.update_layout(showlegend=False)
    return _layout(fig, "median, min-max", 360)


def _size(n):
    for unit, step in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= step and n % step == 0:
            return f"{n // step}{unit}"
    return str(n)
