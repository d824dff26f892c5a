"""The recorder's costs (issue 15): wall time with call stacks, bytes on disk per
operation, and loading, on CPython building and serialising a 200,000-key dict.

The workload runs with PYTHONMALLOC=malloc (every object through malloc: about 4.2
million operations in half a second) under these configurations, --repeat rounds each,
interleaved so that a busy machine slows every configuration alike; medians of wall
time and of CPU time (user + system, the child's own from wait4; heaptrack's with its
helper processes) compared:

  glibc         no preload, no recorder
  ours          pymalloc_real's library, no recorder (the baseline of the ratios)
  trace         trace=, stacks=off: every operation, no stacks
  sampled       trace=, stacks=sampled (the default): a stack per 512 KiB on average
  all           trace=, stacks=all: every allocation's stack
  heaptrack     Debian's heaptrack over glibc (when installed; its ratio is to glibc)

Then bytes on disk per operation for each recording, and loading: CPU seconds to read
the recording (trace.decode: decoding, object ids, sites' totals, timeline) against
Trace.from_raw over the same operations in the old 24-byte raw form.

    python benchmarks/bench_recorder.py [--repeat 5] [--dict-keys 200000] [--json FILE]

Standard library and pymalloc_real only; heaptrack is optional (apt-get install heaptrack).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from pymalloc_real import preload, trace

CONFIGS = ("glibc", "ours", "trace", "sampled", "all", "heaptrack")


def workload(keys):
    return [sys.executable, "-c",
            f"import json; d = {{str(i): [i, str(i)] for i in range({keys})}}; "
            "print(len(json.dumps(d)))"]


def run_once(config, cmd, scratch, round_number):
    env = dict(os.environ, PYTHONMALLOC="malloc")
    if config == "heaptrack":
        out = os.path.join(scratch, f"heaptrack.{round_number}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        subprocess.run(["heaptrack", "-o", out, *cmd], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)     # heaptrack's helpers too
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        files = [f for f in os.listdir(scratch) if f.startswith(f"heaptrack.{round_number}")]
        size = sum(os.path.getsize(os.path.join(scratch, f)) for f in files)
        for f in files:
            os.remove(os.path.join(scratch, f))
        return wall, cpu, size, None
    if config == "glibc":
        report = preload.run(cmd, allocator="glibc", env=env, stats=False)
        return report.wall_time, report.cpu_time, 0, None
    options = {}
    path = None
    if config != "ours":
        path = os.path.join(scratch, f"{config}.{round_number}.%p.raw")
        options = {"trace": path, "stacks": {"trace": "off"}.get(config, config)}
    report = preload.run(cmd, options=options, env=env, stats=False)
    if report.exit_status != 0:
        raise SystemExit(f"{config}: exit status {report.exit_status}: {report.stderr}")
    if path is None:
        return report.wall_time, report.cpu_time, 0, None
    written = path.replace("%p", str(report.pid))
    return report.wall_time, report.cpu_time, os.path.getsize(written), written


def old_raw_form(recorded):
    """The same operations as the old recorder wrote them: 24-byte records with
    addresses (an object's address: 16 * (id + 1)), realloc as its two records."""
    out = bytearray(struct.pack("<8sII", b"PRMRAW01", 24, 1))
    pack = trace.RECORD.pack
    for op, oid, size, align, thread in recorded:
        address = 16 * (oid + 1)
        if op == trace.REALLOC:
            out += pack(3, 0, thread, 0, address, size) + pack(6, 0, thread, 0, address, size)
        else:
            out += pack(op, align, thread, 0, address, size)
    return bytes(out)


def cpu_seconds(function, *args):
    start = time.process_time()
    result = function(*args)
    return time.process_time() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dict-keys", type=int, default=200_000)
    parser.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = parser.parse_args()
    cmd = workload(args.dict_keys)
    configs = [c for c in CONFIGS if c != "heaptrack" or shutil.which("heaptrack")]
    walls = {c: [] for c in configs}
    cpus = {c: [] for c in configs}
    sizes = {}
    kept = {}
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as scratch:
        for round_number in range(args.repeat):
            for config in configs:
                wall, cpu, size, written = run_once(config, cmd, scratch, round_number)
                walls[config].append(wall)
                cpus[config].append(cpu)
                sizes[config] = size
                if written:
                    if config in kept:
                        os.remove(kept[config])
                    kept[config] = written
            print(f"round {round_number + 1}/{args.repeat} done", file=sys.stderr)
        loads = {}
        ops = {}
        for config, path in kept.items():
            with open(path, "rb") as f:
                data = f.read()
            seconds, raw = cpu_seconds(trace.decode, data)
            ops[config] = len(raw.trace)
            if config == "sampled":
                seconds_sites, _ = cpu_seconds(trace.call_sites, raw)
                loads["sites (symbolising included)"] = seconds_sites
            loads[f"decode {config}"] = seconds
        old = old_raw_form(raw.trace)
        loads["old 24-byte form: Trace.from_raw"], _ = cpu_seconds(trace.Trace.from_raw, old)
    medians = {c: statistics.median(v) for c, v in walls.items()}
    cpu_medians = {c: statistics.median(v) for c, v in cpus.items()}
    rows = []
    for config in configs:
        base = "glibc" if config in ("glibc", "heaptrack") else "ours"
        n = ops.get(config)
        per_op = sizes[config] / n if n else (sizes[config] / ops["trace"] if sizes[config] else None)
        rows.append((config, medians[config], medians[config] / medians[base],
                     cpu_medians[config], cpu_medians[config] / cpu_medians[base],
                     sizes[config], per_op))
    print(f"\nCPython json workload ({args.dict_keys:,} keys, PYTHONMALLOC=malloc), "
          f"{ops.get('trace', 0):,} operations, median of {args.repeat} runs\n")
    print("| configuration | wall s | wall ratio | CPU s | CPU ratio | on disk | bytes/op |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for config, wall, ratio, cpu, cpu_ratio, size, per_op in rows:
        print(f"| {config} | {wall:.3f} | {ratio:.2f}x | {cpu:.3f} | {cpu_ratio:.2f}x | "
              f"{size:,} | " + (f"{per_op:.2f} |" if per_op else "- |"))
    n = ops.get("trace", 1)
    print("\n| loading (CPU seconds) | s | ns/op |")
    print("|---|---:|---:|")
    for name, seconds in loads.items():
        print(f"| {name} | {seconds:.2f} | {seconds / n * 1e9:.0f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"walls": walls, "cpus": cpus, "medians": medians, "sizes": sizes, "ops": ops,
                       "loads": loads}, f, indent=2)


if __name__ == "__main__":
    main()
