"""The run report (issue 15): a program's memory as one self-contained HTML page.

The numbers are checked against traces whose answers are known by construction and
against tests/c/report/known_sites.c, whose header states what it leaks, how many of its
allocations are temporary and which function allocates most; the heap map against the
core's own walk; the page in a real browser (headless Chromium driven by selenium,
installed by `make browser`): no console errors, every chart drawn, the slider redrawing
the heap map, a screenshot saved to pytest's tmp dir.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers import HERE, ROOT, compile_programs
from pymalloc_real import trace as tracing
from pymalloc_real.cli import main
from pymalloc_real.report import measures as measuring
from pymalloc_real.report import heapmap, model

SOURCES = os.path.join(HERE, "c", "report")
BIN = os.path.join(HERE, "c", "bin")
MALLOC, FREE, REALLOC = tracing.MALLOC, tracing.FREE, tracing.REALLOC


def _expectations():
    with open(os.path.join(SOURCES, "known_sites.c"), encoding="utf-8") as f:
        line = re.search(r"expect: (.*)", f.read()).group(1)
    return {k: (int(v) if v.isdigit() else v) for k, v in
            (item.split("=") for item in line.split())}


EXPECT = _expectations()


@pytest.fixture(scope="module")
def program():
    return compile_programs(SOURCES, ["known_sites"], BIN, "report_",
                            ["-g", "-O0", "-fno-omit-frame-pointer", "-rdynamic"],
                            "the report's test program")["known_sites"]


@pytest.fixture(scope="module")
def known(program):
    """The report of known_sites, every stack recorded, beside glibc (one run each)."""
    return model.report([program], allocators=["glibc"], repeat=1, stacks="all")


@pytest.fixture(scope="module")
def page(known, tmp_path_factory):
    """known's page, written once."""
    return known.save_html(str(tmp_path_factory.mktemp("report") / "known.html"))


# ---- the numbers ----------------------------------------------------------------------------

def test_measures_of_a_trace_known_by_construction():
    ops = [(MALLOC, 0, 100), (FREE, 0),             # temporary: nothing allocated between
           (MALLOC, 1, 1000), (MALLOC, 2, 40),       # 1 is not temporary (2 came between)
           (REALLOC, 2, 4000), (FREE, 1),
           (MALLOC, 3, 8), (MALLOC, 4, 5000)]        # 2, 3 and 4 leak
    t = tracing.Trace.from_ops(ops)
    m, live = measuring.measure(t)
    assert live.tolist() == [100, 0, 1000, 1040, 5000, 4000, 4008, 9008]
    assert (m.peak_live, m.peak_live_op) == (9008, 8)
    assert (m.leaked_bytes, m.leaked_objects) == (4000 + 8 + 5000, 3)
    assert m.temporary == 1 and m.mallocs == 5 and m.frees == 2 and m.reallocs == 1
    assert {c.limit: (c.count, c.bytes) for c in m.size_classes} == {
        8: (1, 8), 64: (1, 40), 128: (1, 100), 1024: (1, 1000), 4096: (1, 4000),
        8192: (1, 5000)}


def test_the_thinned_series_keeps_every_peak():
    t = tracing.exponential(50_000, mean_size=300, mean_lifetime=500, seed=3)
    m, live = measuring.measure(t, points=100)
    assert len(m.series_op) <= 101 and m.series_op[-1] == len(t)
    assert max(m.series_live) == m.peak_live == t.summary().peak_live_bytes
    assert m.leaked_bytes == 0 or m.leaked_bytes == int(live[-1])


# ---- the heap map ---------------------------------------------------------------------------

def test_heap_map_follows_the_heap_through_time():
    """A heap filled, a mapped block, then everything freed: the map shows cells in use
    at the peak, the mapped chunk beside, nothing in use at the end."""
    ops = [(MALLOC, i, 4000) for i in range(200)]                  # ~800 KB in the heap
    ops += [(MALLOC, 200, 4 << 20)]                                 # a mapped chunk
    ops += [(FREE, i) for i in range(0, 200, 2)]                    # holes
    ops += [(FREE, i) for i in range(1, 200, 2)] + [(FREE, 200)]
    t = tracing.Trace.from_ops(ops)
    m, _ = measuring.measure(t)
    hm = heapmap.build(t, m.peak_live, m.peak_live_op, samples=len(t), snapshots=len(t))
    assert hm.ops[0] == 0 and hm.ops[-1] == len(t) and m.peak_live_op in hm.ops
    codes = [bytes(frame) for frame in hm.frames]
    at_peak = hm.ops.index(m.peak_live_op)
    held = [c for c in codes[at_peak] if c != heapmap.CODE_NOT_HELD]
    assert held.count(heapmap.CODE_USED) > 0.5 * len(held)
    assert hm.mapped_count[at_peak] == 1 and hm.mapped[at_peak][0] >= 4 << 20
    holes = hm.ops.index(201 + 100)                                 # every other block freed
    assert hm.free["small"][holes] + hm.free["large"][holes] + \
        hm.free["unsorted"][holes] + hm.free["fast"][holes] >= 100 * 4000
    assert heapmap.CODE_USED not in codes[-1] and hm.mapped_count[-1] == 0
    assert all(len(frame) == hm.rows * hm.columns for frame in hm.frames)


def test_cells_never_exceed_the_limit_on_a_big_trace():
    t = tracing.uniform(60_000, 16, 65536, max_live=2000, seed=2)
    m, _ = measuring.measure(t)
    hm = heapmap.build(t, m.peak_live, samples=50, snapshots=10, cells=1024)
    assert hm.rows * hm.columns <= 1024 + hm.columns
    assert 10 <= len(hm.frames) <= 12
    assert all(set(frame) <= set(range(heapmap.CODE_USED + 1)) for frame in hm.frames)


# ---- the report of a real program -------------------------------------------------------------

def test_the_report_counts_what_the_program_did(known):
    m = known.measures
    assert known.exit_status == 0
    assert m.leaked_bytes == EXPECT["leaked_bytes"]
    assert m.leaked_objects == EXPECT["leaked_objects"]
    assert m.temporary >= EXPECT["temporary"]
    assert m.peak_live >= 48 * 65536
    assert known.max_rss > 0 and known.wall_time > 0 and known.calls_per_second > 0
    labels = [card[0] for card in known.summary_cards()]
    for wanted in ("run time", "peak live", "peak RSS", "calls per second", "leaked",
                   "temporary allocations", "page faults"):
        assert wanted in labels


def test_the_top_call_site_is_the_biggest_allocator(known):
    top = known.top_site("peak_bytes")
    assert top is not None and top.name == EXPECT["top_peak"]
    assert top.leaked_bytes == EXPECT["leaked_bytes"]
    assert known.top_site("leaked_bytes").name == EXPECT["top_peak"]


def test_the_page_is_self_contained(known, page):
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|@import", text)
    for section in ("summary", "timeline", "size-classes", "call-sites", "fragmentation",
                    "heap-map", "comparison"):
        assert f'id="{section}"' in text
    assert "glibc" in text and "pymalloc_real" in text
    assert known._repr_html_().startswith("<iframe srcdoc=")   # Jupyter's view


def test_an_empty_recording_is_an_error():
    with pytest.raises(tracing.TraceError, match="recorded no"):
        model.report(["sh", "-c", "exit 0"])    # dash: no malloc, and it ends with _exit


# ---- the command line -------------------------------------------------------------------------

def test_cli_writes_the_page_and_json(program, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", "-o", str(out), "--json", "--", program]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["measures"]["leaked_bytes"] == EXPECT["leaked_bytes"]
    assert data["file"] == str(out) and os.path.getsize(out) == data["file_bytes"]


def test_cli_reports_on_a_trace_file(tmp_path, capsys):
    saved = tmp_path / "t.trace"
    tracing.phased(n_phases=3, objects_per_phase=200, seed=1).save(str(saved))
    out = tmp_path / "t.html"
    assert main(["report", "--trace", str(saved), "-o", str(out)]) == 0
    assert "pymalloc-real report:" in capsys.readouterr().err and out.exists()


@pytest.mark.parametrize("argv, message", [
    (["report", "-o", "x.txt", "--", "ls"], "must end in .html"),
    (["report", "--allocators", "nosuch", "--", "ls"], "unknown allocator 'nosuch'"),
    (["report"], "no command given"),
    (["report", "--trace", "/nonexistent.trace"], "no trace file"),
])
def test_cli_mistakes_are_one_line_and_status_2(argv, message, capsys, tmp_path,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ---- in a real browser ------------------------------------------------------------------------

def _browser():
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("headless Chromium is missing: `make browser` installs chromium and "
                    "chromium-driver", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,4200"):
        options.add_argument(argument)
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_page_in_a_real_browser(known, page, tmp_path):
    browser = _browser()
    try:
        browser.set_page_load_timeout(60)
        browser.get("file://" + page)
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(browser, 60).until(
            lambda b: b.execute_script("return window.reportReady === true"))
        charts = browser.execute_script(
            "return Array.from(document.querySelectorAll('.chart')).map(function (e) {"
            " return [e.id, e.querySelectorAll('.main-svg').length,"
            " e.querySelectorAll('.trace, .point, .cartesianlayer path').length]; })")
        ids = [c[0] for c in charts]
        for wanted in ("fig-timeline", "fig-size-classes", "fig-fragmentation",
                       "fig-heapmap", "fig-comparison"):
            assert wanted in ids
        assert all(svgs > 0 and marks > 0 for _, svgs, marks in charts), charts

        def heap_z():
            return browser.execute_script(
                "return JSON.stringify(document.getElementById('fig-heapmap').data[0].z)")

        before, frame = heap_z(), browser.execute_script(
            "return document.getElementById('heapmap-frame').dataset.frame")
        last = browser.execute_script(
            "var s = document.getElementById('heapmap-slider'); s.value = s.max;"
            "s.dispatchEvent(new Event('input')); return s.max")
        assert browser.execute_script(
            "return document.getElementById('heapmap-frame').dataset.frame") == last != frame
        assert heap_z() != before
        caption = browser.find_element("id", "heapmap-caption").text
        assert f"after operation {known.measures.ops:,}" in caption
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
        assert browser.save_screenshot(str(tmp_path / "report.png"))
        assert os.path.getsize(tmp_path / "report.png") > 10_000
    finally:
        browser.quit()


def test_python_m_pymalloc_real_report_help():
    proc = subprocess.run([sys.executable, "-m", "pymalloc_real", "report", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "--allocators" in proc.stdout


def test_the_icicle_sums_each_node_over_the_sites_under_it():
    from pymalloc_real.report.sites import SiteRow, tree
    rows = [SiteRow("a", "", 1, 1, 5, 0, ("main", "f", "a")),
            SiteRow("b", "", 1, 1, 3, 0, ("main", "g", "b")),
            SiteRow("c", "", 1, 1, 2, 0, ("main", "f", "c"))]
    ids, labels, parents, values = tree(rows, "peak_bytes")
    nodes = {labels[i]: (labels[int(parents[i])] if parents[i] else None, values[i])
             for i in range(len(ids))}
    assert nodes == {"main": (None, 10), "f": ("main", 7), "g": ("main", 3),
                     "a": ("f", 5), "b": ("g", 3), "c": ("f", 2)}


def test_a_report_through_an_exec_wrapper_is_of_the_program(program, tmp_path):
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\nexec "$@"\n')
    wrapper.chmod(0o755)
    r = model.report([str(wrapper), program], stacks="all")
    assert r.command.endswith("report_known_sites")
    assert any("exec'd" in note and "wrapper.sh" in note for note in r.notes)
    assert r.measures.leaked_bytes == EXPECT["leaked_bytes"]
    assert r.top_site().name == EXPECT["top_peak"]


def test_a_command_whose_children_allocate_says_so(program):
    with pytest.raises(model.ReportError, match=r"made no allocation call itself.*40,103 calls"):
        model.report(["sh", "-c", f"{program}; true"])      # sh forks it, then runs true
