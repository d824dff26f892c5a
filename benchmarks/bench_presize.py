"""Seed 001's working set, measured: does presizing the heap from a recorded profile make
a program start faster?

For each workload, one run under the preload library with ``profile=PATH`` records the
profile (the heap's peak size and the live chunks per size class at the peak); then
--repeat rounds each run the workload without and with ``presize=PATH``, in alternating
order, and the medians are compared: minor page faults and wall time (from wait4), the
brk calls and the heap size at exit (the library's statistics), and peak RSS.

Workloads:
  python   CPython with PYTHONMALLOC=malloc (every object through malloc) building a
           dict of 200,000 strings: many small allocations, a heap of about 29 MiB;
  startup  CPython with PYTHONMALLOC=malloc importing json, re and collections and
           exiting: start-up only, a heap of a few MiB;
  cc1      gcc's compiler proper (cc1, run directly so that one process is measured)
           compiling a generated C file of 300 functions at -O2.

    python benchmarks/bench_presize.py [--repeat 11] [--json FILE]

Standard library and pymalloc_real only.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

from bench_python_api import cpu_model      # this directory: the same machine line

from pymalloc_real import preload, trace

PY_ENV = {"PYTHONMALLOC": "malloc"}


def workloads(scratch):
    source = os.path.join(scratch, "prog.c")
    with open(source, "w") as f:
        for i in range(300):
            f.write(f"int f{i}(int x) {{ int s = 0; for (int j = 0; j < x; j++) "
                    f"s += j * {i} ^ (s >> {i % 7}); return s + {i}; }}\n")
    cc1 = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return {
        "python": ([sys.executable, "-c",
                    "d = {i: str(i) * 3 for i in range(200000)}; print(len(d))"], PY_ENV),
        "startup": ([sys.executable, "-c", "import json, re, collections; print(1)"], PY_ENV),
        "cc1": ([cc1, "-quiet", "-O2", source, "-o", os.path.join(scratch, "prog.s")], {}),
    }


def measure(name, cmd, extra_env, repeat, scratch):
    env = dict(os.environ, **extra_env)
    path = os.path.join(scratch, f"{name}.profile")
    profile, _ = trace.profile(cmd, path=path, env=env, timeout=300)
    runs = {"plain": [], "presized": []}
    for round_number in range(repeat):
        order = ("plain", "presized") if round_number % 2 == 0 else ("presized", "plain")
        for kind in order:
            options = {"presize": path} if kind == "presized" else None
            report = preload.run(cmd, options=options, env=env, timeout=300)
            if report.exit_status != 0:
                raise RuntimeError(f"{name} ({kind}) failed: {report.stderr[-2000:]}")
            runs[kind].append(report)
    result = {"workload": name, "command": " ".join(cmd), "heap_peak": profile.heap_peak,
              "profile_classes": len(profile.classes)}
    for kind, reports in runs.items():
        result[kind] = {
            "minor_faults": statistics.median(r.minor_faults for r in reports),
            "wall_time": statistics.median(r.wall_time for r in reports),
            "cpu_time": statistics.median(r.cpu_time for r in reports),
            "max_rss": statistics.median(r.max_rss for r in reports),
            "brk_moves": statistics.median(r.stats["brk_moves"] for r in reports),
            "heap_bytes": statistics.median(r.stats["heap_bytes"] for r in reports),
            "wall_min_max": [min(r.wall_time for r in reports), max(r.wall_time for r in reports)],
        }
    return result


def markdown(results):
    lines = ["| workload | heap peak | | minor faults | wall (median) | wall min-max | CPU | "
             "brk calls | heap at exit | peak RSS |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for kind in ("plain", "presized"):
            m = r[kind]
            lines.append(
                f"| {r['workload'] if kind == 'plain' else ''} | "
                f"{r['heap_peak'] / 2**20:.1f} MiB | {kind} | {m['minor_faults']:,.0f} | "
                f"{m['wall_time'] * 1000:.1f} ms | {m['wall_min_max'][0] * 1000:.0f}-"
                f"{m['wall_min_max'][1] * 1000:.0f} ms | {m['cpu_time'] * 1000:.1f} ms | "
                f"{m['brk_moves']:,.0f} | {m['heap_bytes'] / 2**20:.1f} MiB | "
                f"{m['max_rss'] / 2**20:.1f} MiB |")
        p, q = r["plain"], r["presized"]
        lines.append(f"| | | ratio | {q['minor_faults'] / p['minor_faults']:.2f}x | "
                     f"{q['wall_time'] / p['wall_time']:.2f}x | | "
                     f"{q['cpu_time'] / p['cpu_time']:.2f}x | | | "
                     f"{q['max_rss'] / p['max_rss']:.2f}x |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--only", help="comma-separated workloads")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-presize-") as scratch:
        chosen = workloads(scratch)
        if args.only:
            chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
        results = [measure(name, cmd, env, args.repeat, scratch)
                   for name, (cmd, env) in chosen.items()]
    print(f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} CPUs, Linux "
          f"{platform.release()}, medians of {args.repeat} interleaved runs")
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
