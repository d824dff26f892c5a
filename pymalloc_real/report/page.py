"""The report as one self-contained HTML page: ``template.html`` filled with the summary
cards, the call-site tables, the figures (as plotly JSON, drawn by the page's script with
plotly.js inlined) and the heap map's frames (base64 bytes, redrawn by the slider).
Nothing is fetched when the page opens.
"""


import base64
import datetime
import html
import json
import os
import string

from . import figures
from .sites import METRICS, ranked

_TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "template.html")


def render(report):
    """The page of ``report`` (a Report), as text."""
    import plotly.offline
    with open(_TEMPLATE, encoding="utf-8") as f:
        template = string.Template(f.read())
    hm = report.heapmap
    first = _frame_nearest(hm.ops, report.measures.peak_live_op) if hm.ops else 0
    figs = {"fig-timeline": figures.timeline(report.timeline, report.measures, hm),
            "fig-size-classes": figures.size_classes(report.measures),
            "fig-fragmentation": figures.fragmentation(hm, report.live),
            "fig-heapmap": figures.heap_map(hm, first, _rows(hm, first))}
    if report.site_rows:
        figs["fig-sites"] = figures.sites_icicle(report.site_rows)
    if report.comparison is not None:
        figs["fig-comparison"] = figures.comparison(report.comparison)
    data = {"figures": {name: json.loads(fig.to_json()) for name, fig in figs.items()},
            "heapmap": _heapmap_data(hm, report)}
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return template.substitute(
        title=html.escape(f"pymalloc_real report: {report.command}"),
        subtitle=html.escape(_subtitle(report)),
        plotlyjs=plotly.offline.get_plotlyjs(),
        cards="".join(_card(*card) for card in report.summary_cards()),
        notes="".join(f"<li>{html.escape(note)}</li>" for note in report.notes),
        sites=_sites_section(report),
        cell_bytes=html.escape(_bytes(hm.bytes_per_cell)),
        first_frame=first, last_frame=max(0, len(hm.ops) - 1),
        comparison=_comparison_section(report),
        data=text)


def _subtitle(report):
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [f"written {when}"]
    if report.pid:
        parts.append(f"pid {report.pid}")
    if report.exit_status is not None:
        parts.append(f"exit status {report.exit_status}")
    parts.append(f"{report.measures.ops:,} allocation calls in {report.measures.threads} "
                 "thread(s)")
    return " · ".join(parts)


def _card(key, value, detail=""):
    return (f'<div class="card"><div class="k">{html.escape(key)}</div>'
            f'<div class="v">{html.escape(value)}</div>'
            f'<div class="d">{html.escape(detail)}</div></div>')


def _sites_section(report):
    if not report.site_rows:
        return ('<p class="sub">No call sites: ' + html.escape(report.sites_missing or
                "the recording has none") + "</p>")
    tables = []
    for metric, label in METRICS:
        rows = ranked(report.site_rows, metric)
        body = "".join(
            f"<tr><td>{html.escape(r.name)}</td>"
            f'<td title="{html.escape(r.where)}">{html.escape(os.path.basename(r.where))}</td>'
            f'<td class="n">{r.calls:,}</td><td class="n">{_bytes(r.peak_bytes)}</td>'
            f'<td class="n">{_bytes(r.leaked_bytes)}</td></tr>' for r in rows)
        if not rows:
            body = f"<tr><td colspan='5'>no site with {label}</td></tr>"
        tables.append(f'<div><b>Top sites by {label}</b><table id="sites-by-{metric}">'
                      "<tr><th>function</th><th>where</th><th class='n'>calls</th>"
                      "<th class='n'>peak</th><th class='n'>leaked</th></tr>"
                      f"{body}</table></div>")
    return ('<div class="tables">' + "".join(tables) + "</div>"
            '<div id="fig-sites" class="chart"></div>')


def _comparison_section(report):
    if report.comparison is None:
        return ""
    rows = []
    for result in report.comparison.allocators:
        if result.missing:
            rows.append(f"<tr><td>{html.escape(result.name)}</td>"
                        f"<td colspan='4'>{html.escape(result.missing)}</td></tr>")
            continue
        m = result.metrics
        rows.append(f"<tr><td>{html.escape(result.name)}</td>"
                    f"<td class='n'>{m['wall_time'].median:.3f} s</td>"
                    f"<td class='n'>{_bytes(m['max_rss'].median)}</td>"
                    f"<td class='n'>{int(m['minor_faults'].median):,}</td>"
                    f"<td class='n'>{result.runs_ok}/{len(result.runs)}</td></tr>")
    return ('<h2 id="comparison">Other allocators</h2><table id="comparison-table"><tr>'
            "<th>allocator</th><th class='n'>wall (median)</th><th class='n'>peak RSS</th>"
            "<th class='n'>minor faults</th><th class='n'>runs ok</th></tr>"
            + "".join(rows) + '</table><div id="fig-comparison" class="chart"></div>')


def _heapmap_data(hm, report):
    live = report.live
    return {"rows": hm.rows, "columns": hm.columns, "ops": hm.ops,
            "total_ops": report.measures.ops,
            "frames": [base64.b64encode(frame).decode("ascii") for frame in hm.frames],
            "break_cells": hm.break_cells, "mapped": hm.mapped,
            "mapped_count": hm.mapped_count, "free": hm.free, "heap_bytes": hm.heap_bytes,
            "mapped_bytes": hm.mapped_bytes,
            "live": [int(live[op - 1]) if op else 0 for op in hm.ops]}


def _rows(hm, frame):
    codes = hm.frames[frame] if hm.frames else b""
    return [list(codes[r * hm.columns:(r + 1) * hm.columns]) for r in range(hm.rows)]


def _frame_nearest(ops, op):
    return min(range(len(ops)), key=lambda k: abs(ops[k] - op))


def _bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"
