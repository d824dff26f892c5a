"""Cost of one malloc+free pair through pymalloc_real's Python API, against libc.

For each size, four loops are timed with ``timeit`` in the same run:

  libc        free(malloc(n))          libc's malloc and free, called through the
                                       package's own cffi (API mode) binding: the baseline
  core        free(malloc(n))          the C core's raw binding, lib.prm_malloc/prm_free
  block.free  malloc(n).free()         the public API, freeing through the Block
  prm.free    free(malloc(n))          the public API, freeing with pymalloc_real.free

Every statement uses names bound as locals in the timeit setup (``malloc``, ``free``,
``n``), so no variant pays for a global or attribute lookup the others skip. Within each
repeat the four variants run one after another (in a rotated order), so machine noise
falls on all of them alike; each variant's figure is its best repeat. The result is ns
per pair and the ratio to ``libc``; the target for the public API is at most 1.3x.

    python benchmarks/bench_python_api.py [--sizes 16,64,256,1024,4096] [--repeat 7]
                                          [--number N] [--json FILE]

Standard library and pymalloc_real only.
"""
import argparse
import datetime
import gc
import json
import math
import os
import platform
import sys
import timeit

import pymalloc_real as prm
from pymalloc_real.bench import cpu_model
from pymalloc_real._core import ffi, lib

DEFAULT_SIZES = (16, 64, 256, 1024, 4096)
TARGET_RATIO = 1.3
# With --number left out, it is chosen so that one run of the baseline loop takes
# about this long (the slower variants take proportionally longer).
CALIBRATION_SECONDS = 0.1

# (key, column title, setup binding the locals, timed statement)
VARIANTS = (
    ("libc", "libc via cffi", "malloc = lib.malloc; free = lib.free", "free(malloc(n))"),
    ("core", "core raw binding", "malloc = lib.prm_malloc; free = lib.prm_free",
     "free(malloc(n))"),
    ("block_free", "prm.malloc(n).free()", "malloc = prm.malloc", "malloc(n).free()"),
    ("prm_free", "prm.free(prm.malloc(n))", "malloc = prm.malloc; free = prm.free",
     "free(malloc(n))"),
)
BASELINE = "libc"


# ---- machine ---------------------------------------------------------------------------

def machine_info():
    import cffi
    libc, libc_version = platform.libc_ver()
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "cffi": cffi.__version__,
        "libc": f"{libc} {libc_version}".strip() or "unknown",
        "platform": platform.platform(),
        "pymalloc_real": prm.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


# ---- timing ----------------------------------------------------------------------------

def make_timer(setup, stmt, size):
    # setup runs inside timeit's generated function, so what it binds are locals there.
    return timeit.Timer(stmt, setup=f"{setup}; n = {size}",
                        globals={"lib": lib, "prm": prm})


def sanity_check(sizes):
    """Each statement must do what its name says before it is timed."""
    for size in sizes:
        p = lib.malloc(size)
        assert p != ffi.NULL, f"libc malloc({size}) failed"
        lib.free(p)
        p = lib.prm_malloc(size)
        assert p != ffi.NULL, f"prm_malloc({size}) failed"
        assert lib.prm_usable_size(p) >= size
        assert lib.prm_free(p) == lib.PRM_OK
        b = prm.malloc(size)
        assert isinstance(b, prm.Block) and b.size == size and not b.freed
        b.free()
        assert b.freed
        b = prm.malloc(size)
        prm.free(b)
        assert b.freed


def calibrate(sizes):
    """A loop count making one run of the baseline take about CALIBRATION_SECONDS."""
    _, _, setup, stmt = VARIANTS[0]
    timer = make_timer(setup, stmt, max(sizes))
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= CALIBRATION_SECONDS / 4:
            break
        number *= 4
    return max(1000, int(number * CALIBRATION_SECONDS / elapsed))


def run(sizes, repeat, number):
    """{size: {variant key: [seconds per pair, one per repeat]}}."""
    results = {}
    for size in sizes:
        timers = [(key, make_timer(setup, stmt, size)) for key, _, setup, stmt in VARIANTS]
        for _, timer in timers:             # warm up: the heap grows, caches fill
            timer.timeit(max(1, number // 10))
        samples = {key: [] for key, _ in timers}
        for r in range(repeat):
            # Interleaved and rotated: no variant always runs first or last.
            k = r % len(timers)
            for key, timer in timers[k:] + timers[:k]:
                samples[key].append(timer.timeit(number) / number)
        results[size] = samples
    return results


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def summarize(results):
    """Best ns per pair and ratios to the baseline, per size and as geometric means."""
    best = {size: {key: min(s) * 1e9 for key, s in samples.items()}
            for size, samples in results.items()}
    ratio = {size: {key: ns / row[BASELINE] for key, ns in row.items()}
             for size, row in best.items()}
    keys = [v[0] for v in VARIANTS]
    gm_ns = {key: geomean([best[s][key] for s in best]) for key in keys}
    gm_ratio = {key: geomean([ratio[s][key] for s in ratio]) for key in keys}
    return best, ratio, gm_ns, gm_ratio


# ---- report ----------------------------------------------------------------------------

def markdown_table(best, ratio, gm_ns, gm_ratio):
    header = ["size (bytes)"] + [f"{title}" for _, title, _, _ in VARIANTS]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---:"] * len(header)) + "|"]

    def cells(ns_row, ratio_row):
        out = []
        for key, _, _, _ in VARIANTS:
            if key == BASELINE:
                out.append(f"{ns_row[key]:.1f} ns")
            else:
                out.append(f"{ns_row[key]:.1f} ns ({ratio_row[key]:.2f}x)")
        return out

    for size in best:
        lines.append("| " + " | ".join([str(size)] + cells(best[size], ratio[size])) + " |")
    lines.append("| " + " | ".join(["**geo. mean**"] + [f"**{c}**" for c in
                                                          cells(gm_ns, gm_ratio)]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="comma-separated request sizes in bytes (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=7,
                        help="repeats per variant; the best is kept (default: %(default)s)")
    parser.add_argument("--number", type=int, default=None,
                        help="pairs per timing run (default: calibrated so one baseline "
                             f"run takes ~{CALIBRATION_SECONDS}s)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw numbers here")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: not a comma-separated list of integers: {args.sizes!r}")
    if not sizes or any(s < 0 for s in sizes):
        parser.error("--sizes: give at least one size, none negative")
    if args.repeat < 1 or (args.number is not None and args.number < 1):
        parser.error("--repeat and --number must be at least 1")

    machine = machine_info()
    sanity_check(sizes)
    in_use_before = prm.stats().in_use_chunks
    number = args.number or calibrate(sizes)

    print("# pymalloc_real: malloc+free pair through the Python API vs libc via cffi\n")
    print(f"- machine: {machine['cpu']} ({machine['cpus']} CPUs), {machine['platform']}")
    print(f"- Python: {machine['python']} ({machine['compiler']}), cffi {machine['cffi']}, "
          f"{machine['libc']}")
    print(f"- date: {machine['date']}")
    print(f"- method: timeit, {number} pairs per run, best of {args.repeat} interleaved "
          f"repeats, gc {'enabled' if gc.isenabled() else 'disabled'} outside timeit "
          "(timeit turns it off while timing)\n")
    sys.stdout.flush()

    results = run(sizes, args.repeat, number)
    best, ratio, gm_ns, gm_ratio = summarize(results)

    print(markdown_table(best, ratio, gm_ns, gm_ratio))
    print(f"\nns per malloc+free pair (timeit loop overhead included in every column); "
          f"ratio to libc in parentheses. Target for the public API: <= {TARGET_RATIO}x.")
    print("Timed statements (names bound as locals in the timeit setup):")
    for _, title, setup, stmt in VARIANTS:
        print(f"- {title}: `{stmt}` with `{setup}`")
    print()
    for key in ("block_free", "prm_free"):
        verdict = "meets" if gm_ratio[key] <= TARGET_RATIO else "misses"
        title = next(t for k, t, _, _ in VARIANTS if k == key)
        print(f"- {title}: {gm_ratio[key]:.2f}x geometric mean, {verdict} the target")

    prm.check()     # raises HeapCorruption if the loops damaged the heap
    in_use_after = prm.stats().in_use_chunks
    if in_use_after != in_use_before:
        print(f"\nWARNING: in-use chunks {in_use_before} -> {in_use_after}: a loop leaked",
              file=sys.stderr)

    if args.json:
        payload = {
            "benchmark": "python_api_malloc_free_pair",
            "machine": machine,
            "number": number,
            "repeat": args.repeat,
            "sizes": sizes,
            "baseline": BASELINE,
            "target_ratio": TARGET_RATIO,
            "variants": [{"key": k, "title": t, "setup": s, "stmt": st}
                         for k, t, s, st in VARIANTS],
            "seconds_per_pair": {str(size): samples for size, samples in results.items()},
            "best_ns": {str(size): row for size, row in best.items()},
            "ratio": {str(size): row for size, row in ratio.items()},
            "geomean_ns": gm_ns,
            "geomean_ratio": gm_ratio,
        }
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        print(f"\nraw numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
