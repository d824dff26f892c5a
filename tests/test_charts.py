"""The pictures, checked through matplotlib's own objects (issue 17): no label in
scientific notation, the demo's address-space panel a minor part of its picture with
readable text that stays beside its boxes, coinciding curves each with a marker of
their own and a legend saying which they equal, and min-max whiskers on the bench
chart."""
import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg     # noqa: E402
from matplotlib.patches import Rectangle        # noqa: E402

from pymalloc_real import bench, lab, pagesim   # noqa: E402
from pymalloc_real.bench import files as bench_files    # noqa: E402
from pymalloc_real.demo import pictures               # noqa: E402
from pymalloc_real.demo.records import Chart, Step    # noqa: E402
from pymalloc_real.kernel.space import Band           # noqa: E402
from pymalloc_real.preload import Spread              # noqa: E402


def _draw(figure):
    """Draw on the Agg canvas (a bare Figure's canvas draws nothing); the renderer."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _texts(figure):
    """Every piece of text the figure shows, tick labels and offsets included."""
    _draw(figure)
    found = [t for t in figure.findobj(lambda a: hasattr(a, "get_text")) if t.get_visible()]
    return [t for t in found if t.get_text()]


def _no_scientific_notation(figure):
    shown = [t.get_text() for t in _texts(figure)]
    assert not [s for s in shown if "e+" in s or "e-0" in s or "1e" in s], shown


# ---- the demo's pictures ---------------------------------------------------------------------

def _step(number, chart):
    bands = [Band(0x7ffc55d71000, 0x7ffc55d92000, "stack", "stack", "[stack]", "rw-p", 1,
                  132 * 1024),
             Band(0x7ff579e00000, 0x7ff57a200000, "mapping", "file",
                  "pymalloc-real-demo-h5itqp3o-a-file-with-a-long-name.bin", "r--s", 1,
                  4 << 20, ("<- 4M file, read 0x7ff579e00000",)),
             Band(0x55764fd1d000, 0x7ff579e00000, "", "gap", "unmapped", "", 0, 0),
             Band(0x55764f91c000, 0x55764fd1d000, "heap", "heap", "[heap]", "rw-p", 1,
                  4 << 20, ("the program break 0x55764fd1d000",))]
    return Step(number, "major faults", "major_faults", "", "agrees", "", [], {}, chart,
                "the file mapped, after eviction, and read once", bands, [], {}, [], 0, 0,
                0, 0, 0.0)


STEP2 = Chart("bar", "page faults", "", "page faults", ["malloc(64M)", "touch half"],
              {"faults": [3, 8192]})
STEP5 = Chart("bar", "reading a file through mmap", "", "page faults",
              ["evicted (cold)", "cached (warm)"], {"major": [1024, 0], "minor": [0, 64]})


@pytest.mark.parametrize("chart", [STEP2, STEP5])
def test_demo_bars_are_labelled_in_plain_numbers(chart):
    figure = pictures._figure(_step(5, chart))
    _no_scientific_notation(figure)
    labels = [t.get_text() for t in figure.axes[1].texts]
    assert "8,192" in labels or "1,024" in labels, labels


def test_the_address_space_panel_is_the_smaller_part_with_readable_text():
    figure = pictures._figure(_step(5, STEP5))
    space, chart = figure.axes
    renderer = _draw(figure)
    assert space.get_position().width < 0.45 * chart.get_position().x1
    assert chart.get_position().width > space.get_position().width
    assert min(t.get_fontsize() for t in space.texts) >= 8
    boxes = [p.get_window_extent(renderer) for p in space.patches if isinstance(p, Rectangle)]
    right = chart.get_window_extent(renderer).x0
    for text in space.texts:
        extent = text.get_window_extent(renderer)
        assert extent.x1 <= right, f"{text.get_text()!r} runs into the chart"
        for box in boxes:     # beside a box or inside it, never across its edge
            crosses = extent.x0 < box.x1 < extent.x1 or extent.x0 < box.x0 < extent.x1
            overlaps = extent.y0 < box.y1 and box.y0 < extent.y1
            assert not (crosses and overlaps), f"{text.get_text()!r} overflows its box"


# ---- curves that coincide ----------------------------------------------------------------

def _distinct_markers(ax, names):
    lines = {line.get_label(): line for line in ax.get_lines()}
    markers = [lines[name].get_marker() for name in names]
    assert len(set(markers)) == len(markers), markers
    assert all(marker not in (None, "None", "") for marker in markers)
    return lines


def test_pagesim_curves_that_coincide_stay_visible_and_say_so():
    trace = pagesim.Trace.working_set(512, 20_000, working_set=16, seed=1)
    table = pagesim.curve(trace, range(1, 25))
    assert table.faults("clock") == table.faults("second_chance")
    ax = table.figure().axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "second_chance (= clock)" in legend
    names = [n if n != "second_chance" else "second_chance (= clock)" for n in table.algorithms]
    lines = _distinct_markers(ax, names)
    clock, twin = lines["clock"], lines["second_chance (= clock)"]
    assert clock.get_markevery() != twin.get_markevery(), "markers drawn apart"
    _no_scientific_notation(ax.figure)


def test_lab_footprints_that_coincide_stay_visible_and_say_so():
    only_mallocs = [(1, i, 100 + i % 7) for i in range(300)]    # every fit the same
    comparison = lab.compare(only_mallocs, ["first_fit", "best_fit", "buddy"])
    from pymalloc_real import charts
    same = charts.coinciding({r.policy: [s.footprint for s in r.series]
                              for r in comparison.results})
    assert same.get("best_fit") == "first_fit"
    ax = comparison.figure().axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "best_fit (= first_fit)" in legend
    _distinct_markers(ax, ["first_fit", "best_fit (= first_fit)", "buddy"])
    _no_scientific_notation(ax.figure)


# ---- the bench chart -------------------------------------------------------------------------

def _bench_result():
    def cell(name, low, median, high):
        spread = Spread(median, low, high)
        return bench_report.Cell(name, metrics={"wall_time": spread, "max_rss": spread})
    from pymalloc_real.bench import results as bench_report
    workload = bench_report.WorkloadResult("pairs", "c", "", [], 1, 1, cells={
        "glibc": cell("glibc", 0.9, 1.0, 1.2), "pymalloc_real": cell("pymalloc_real", 0.6, 0.7,
                                                                     0.95)})
    return bench_report.BenchResult({}, "2026-12-03", None, {"repeat": 5},
                                    ["glibc", "pymalloc_real"], {}, [workload])


def test_the_bench_chart_has_min_max_whiskers():
    figure = bench_files.chart_figure(_bench_result())
    for ax in figure.axes:
        whiskers = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
        assert len(whiskers) == 1, "one set of whiskers per allocator drawn"
        (segment,) = whiskers[0].lines[2][0].get_segments()
        assert segment[0][1] == pytest.approx(0.6) and segment[1][1] == pytest.approx(0.95)
    _no_scientific_notation(figure)
    assert bench.REPEAT >= 1
