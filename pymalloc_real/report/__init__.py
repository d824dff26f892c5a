"""The run report (issue 15): any program's memory in one self-contained HTML page.

``report(cmd)`` runs a command on pymalloc_real's preload library, recording every
allocation call (and the call stacks and timeline when the recorder gives them), and
returns a :class:`Report`: the summary (run time, peak live, peak RSS, calls per second,
leaks, temporary allocations, faults), the timeline, size classes, the top call sites (as
tables and an icicle), fragmentation over time, and the heap as our allocator sees it at
any moment (the trace replayed through our core and walked at evenly spaced moments; a
slider moves through them). With ``allocators`` the same program also runs on the peers
side by side. ``Report.save_html(path)`` writes the page (plotly.js inlined: it opens
without a network); in Jupyter a Report shows itself inline.

``measures`` computes the trace's numbers (numpy), ``heapmap`` replays it for the heap
map, ``sites`` ranks and folds call sites, ``figures`` draws the charts (plotly),
``page`` fills ``template.html``, ``model`` holds the Report and the ways to make one.
This wing uses the trace wing, the lab (its replay loop), the running-programs wing and
the core's C module; numpy and plotly come with the ``report`` extra.

    >>> import pymalloc_real
    >>> r = pymalloc_real.report(["ls", "/"])                        # doctest: +SKIP
    >>> r.save_html("ls.html")                                       # doctest: +SKIP
"""
# `import pymalloc_real` gives `report` but loads none of this wing until it is used:
# importing it eagerly changed where the interpreter's own mallocs land enough to upset
# the demo's walk-through (glibc mapped the hole a munmap had just left). The names below
# load their module on first use (PEP 562).
_LAZY = {"HeapMap": "heapmap", "HeapMapError": "heapmap", "SizeClass": "measures",
         "TraceMeasures": "measures", "Report": "model", "ReportError": "model",
         "from_recording": "model", "from_trace": "model", "SiteRow": "sites"}


def report(cmd, **kwargs):
    """Run ``cmd`` on pymalloc_real and return its Report (see ``model.report``)."""
    from .model import report as make
    return make(cmd, **kwargs)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["report", "from_trace", "from_recording", "Report", "ReportError", "HeapMap",
           "HeapMapError", "TraceMeasures", "SizeClass", "SiteRow"]
