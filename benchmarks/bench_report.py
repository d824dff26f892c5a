"""How long the run report takes to write and to open, for a trace of 10^7 operations.

The trace is made by ``trace.exponential`` (sizes exponential around 256 bytes, lifetimes
around --lifetime operations; the generator takes about 40 s and is not timed) and saved
in the binary form; the report is then written from the file as ``pymalloc-real report
--trace FILE`` does, each stage timed: loading the trace, its numbers (numpy), the heap
map (the replay through our core with 1,000 samples and 100 heap walks), the page, in
wall and CPU seconds (the CPU of the replay's child process included). The
page is then opened in headless Chromium (selenium) and timed from navigation until every
chart is drawn (the page sets ``window.reportReady``), --repeat times, best reported.

    python benchmarks/bench_report.py [--ops N] [--lifetime N] [--trace FILE]
                                      [--repeat 3] [--json FILE]

Targets (issue 15): written in at most 30 s, opened in at most 5 s.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
import time

from bench_python_api import cpu_model      # this directory: the same machine line

from pymalloc_real import trace as tracing
from pymalloc_real.report import heapmap, measures
from pymalloc_real.report.model import Report

TARGETS = {"written": 30.0, "opened": 5.0}


def _clock():
    """(wall seconds, CPU seconds of this process and its children): this machine is
    shared, so wall time alone can be several times the work done."""
    t = os.times()
    return time.perf_counter(), t.user + t.system + t.children_user + t.children_system


def _since(mark):
    wall, cpu = _clock()
    return wall - mark[0], cpu - mark[1]


def write(path, html_path):
    """(wall, CPU) seconds per stage of writing the report of the trace at ``path``."""
    times = {}
    start = mark = _clock()
    trace = tracing.load(path)
    times["load the trace"] = _since(mark)
    mark = _clock()
    numbers, live = measures.measure(trace)
    times["its numbers"] = _since(mark)
    mark = _clock()
    hm = heapmap.build(trace, numbers.peak_live, numbers.peak_live_op)
    times["heap map (replay + walks)"] = _since(mark)
    mark = _clock()
    Report(command=os.path.basename(path), measures=numbers, live=live,
           heapmap=hm).save_html(html_path)
    times["the page"] = _since(mark)
    times["written"] = _since(start)
    return times, numbers, hm


def open_in_chromium(html_path, repeat):
    """Best seconds from navigation to every chart drawn, or None without Chromium."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1300,1000"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    best = float("inf")
    for _ in range(repeat):
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")),
                                   options=options)
        try:
            start = time.perf_counter()
            browser.get("file://" + os.path.abspath(html_path))
            WebDriverWait(browser, 60, poll_frequency=0.02).until(
                lambda b: b.execute_script("return window.reportReady === true"))
            best = min(best, time.perf_counter() - start)
        finally:
            browser.quit()
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=10_000_000)
    parser.add_argument("--lifetime", type=int, default=200_000)
    parser.add_argument("--trace", help="use this trace file instead of generating one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="bench-report-")
    try:
        path = args.trace
        if path is None:
            path = os.path.join(scratch, "exponential.trace")
            tracing.exponential(args.ops, mean_size=256, mean_lifetime=args.lifetime,
                                seed=1).save(path)
        html_path = os.path.join(scratch, "report.html")
        times, numbers, hm = write(path, html_path)
        opened = open_in_chromium(html_path, args.repeat)
        times["opened"] = None if opened is None else (opened, None)
        size = os.path.getsize(html_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{datetime.date.today()}, {cpu_model()}, Python {platform.python_version()}")
    print(f"trace: {numbers.ops:,} ops, peak live {numbers.peak_live / 2**20:.1f} MiB; "
          f"heap map {hm.rows} x {hm.columns} cells of {hm.bytes_per_cell:,} bytes, "
          f"{len(hm.frames)} snapshots; page {size / 1e6:.1f} MB\n")
    print("| stage | wall s | CPU s | target |\n|---|---:|---:|---:|")
    for stage, seconds in times.items():
        target = f"≤ {TARGETS[stage]:.0f}" if stage in TARGETS else ""
        if seconds is None:
            print(f"| {stage} | no Chromium | | {target} |")
            continue
        wall, cpu = seconds
        print(f"| {stage} | {wall:.2f} | {'' if cpu is None else f'{cpu:.2f}'} | {target} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(times, ops=numbers.ops, page_bytes=size), f, indent=2)


if __name__ == "__main__":
    main()
