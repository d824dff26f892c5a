"""Speed of the page-replacement simulator: references per second of each algorithm.

A working-set trace of 10 million references (the generator in csrc/pagesim/pagesim.c: a
working set of 256 pages out of 65,536, 95% of references inside it, moving every
100,000 references, 20% stores) is run through every algorithm at 64 and 1,024 frames.
Each figure is the best of --repeat runs of ``pagesim.simulate``, so it includes the
Python call (microseconds) but not building the trace. OPT's next-use table is built
once per trace, on first need, and timed on its own (the "next-use table" row).

    python benchmarks/bench_pagesim.py [--length N] [--frames 64,1024] [--repeat 3]
                                       [--json FILE]

Targets (issue 8): at least 20 million references per second for LRU, FIFO and clock,
and 5 million for OPT.

Standard library and pymalloc_real only.
"""
import argparse
import datetime
import json
import platform
import time

from bench_python_api import cpu_model      # this directory: the same machine line

from pymalloc_real import pagesim
from pymalloc_real._core import lib

TARGETS = {"lru": 20e6, "fifo": 20e6, "clock": 20e6, "opt": 5e6}


def best_rate(trace, frames, algorithm, repeat):
    """References per second of the fastest of `repeat` runs, and that run's result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = pagesim.simulate(trace, frames, algorithm)
        best = min(best, time.perf_counter() - start)
    return len(trace) / best, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=10_000_000, help="references")
    parser.add_argument("--frames", default="64,1024", help="comma-separated frame counts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    frame_counts = [int(f) for f in args.frames.split(",")]

    start = time.perf_counter()
    trace = pagesim.Trace.working_set(65_536, args.length, working_set=256, phase=100_000,
                                      locality=0.95, write_fraction=0.2, seed=1)
    generated = time.perf_counter() - start
    # The table is otherwise built inside the first OPT run: call the C directly to time
    # it alone, so that the OPT figures are the simulation's only.
    start = time.perf_counter()
    assert lib.ps_trace_next_use(trace._c) == lib.PS_OK
    next_use = time.perf_counter() - start

    rows = {}
    for algorithm in pagesim.ALGORITHMS:
        rows[algorithm] = [best_rate(trace, frames, algorithm, args.repeat)
                           for frames in frame_counts]

    print(f"# Page-replacement simulator: {len(trace):,} references to {trace.pages:,} pages "
          f"({trace.description})\n")
    print(f"{cpu_model()}, Python {platform.python_version()}, "
          f"{datetime.date.today().isoformat()}; best of {args.repeat}. Trace generated in "
          f"{generated:.2f} s ({len(trace) / generated / 1e6:.0f} M refs/s); OPT's next-use "
          f"table in {next_use:.2f} s ({len(trace) / next_use / 1e6:.0f} M refs/s).\n")
    print("| algorithm | " + " | ".join(f"{f} frames: M refs/s (fault rate)"
                                       for f in frame_counts) + " | target |")
    print("|---|" + "---:|" * len(frame_counts) + "---|")
    verdicts = []
    for algorithm, figures in rows.items():
        cells = [f"{rate / 1e6:.1f} ({result.fault_rate:.1%})" for rate, result in figures]
        target = TARGETS.get(algorithm)
        if target:
            met = all(rate >= target for rate, _ in figures)
            verdicts.append(met)
            note = f">= {target / 1e6:.0f} M: {'met' if met else 'MISSED'}"
        else:
            note = ""
        print(f"| {algorithm} | " + " | ".join(cells) + f" | {note} |")
    print(f"\nTargets: {'all met' if all(verdicts) else 'some missed'}.")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"references": len(trace), "pages": trace.pages,
                       "trace": trace.description, "cpu": cpu_model(),
                       "generate_seconds": generated, "next_use_seconds": next_use,
                       "rates": {a: {str(f): rate for f, (rate, _) in zip(frame_counts, figs)}
                                 for a, figs in rows.items()}}, f, indent=2)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
