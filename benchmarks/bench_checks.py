"""What the hardening checks cost (issue 6, "Done when" 3; issue 16, "Done when" 4): the
LD_PRELOAD library built three times from the same sources with the same command: as
shipped, with PRM_HARDENING=0 (safe-linking, sealed links, the lookups before a header
is trusted, the top sanity checks and issue 16's checks against the classic exploits
compiled out; glibc's own checks stay), and in hardened mode from the start
(PRM_DEFAULT_HARDENED=1, what hardened=1 turns on), run through the benchmark harness side
by side, interleaved, with glibc as the usual reference.

Prints, per workload, the median wall time of the checked build over the unchecked one
(1.03 = the checks cost 3%), hardened mode's wall time and peak RSS over the checked
build's, and callgrind's instructions per malloc+free pair of each.

    python benchmarks/bench_checks.py [--repeat 7] [--quick] [--workloads pairs,...] [--json FILE]

Standard library and pymalloc_real only. The two libraries go to benchmarks/bin/.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "pymalloc_real"))
from _build import PRELOAD_COMPILE_ARGS, PRELOAD_LINK_ARGS, PRELOAD_SOURCES  # noqa: E402

from pymalloc_real import bench  # noqa: E402
from pymalloc_real.preload import GLIBC  # noqa: E402

# Named like our library (_preload...), so the harness reads their statistics too.
VARIANTS = {"checked": "_preload_checked.so", "unchecked": "_preload_unchecked.so",
            "hardened": "_preload_hardened.so"}
DEFINES = {"checked": ["-DPRM_HARDENING=1"], "unchecked": ["-DPRM_HARDENING=0"],
           "hardened": ["-DPRM_HARDENING=1", "-DPRM_DEFAULT_HARDENED=1"]}


def build(bin_dir):
    """Both variants, with the flags setup.py uses; {variant: path}."""
    os.makedirs(bin_dir, exist_ok=True)
    paths = {}
    for variant, name in VARIANTS.items():
        path = os.path.join(bin_dir, name)
        argv = ["gcc", "-shared", "-fPIC", *PRELOAD_COMPILE_ARGS, *PRELOAD_LINK_ARGS,
                "-D_GNU_SOURCE", *DEFINES[variant],
                "-I", os.path.join(ROOT, "csrc", "core"),
                *[os.path.join(ROOT, "csrc", source) for source in PRELOAD_SOURCES],
                "-o", path]
        subprocess.run(argv, check=True)
        paths[variant] = path
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workloads", default="pairs,churn,larson,prodcons,realloc,large,frag")
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--quick", action="store_true", help="each workload's small -n")
    args = parser.parse_args(argv)

    paths = build(os.path.join(HERE, "bin"))
    config = bench.BenchConfig(
        workloads=[name for name in args.workloads.split(",") if name],
        allocators=[paths["checked"], paths["unchecked"], paths["hardened"], GLIBC],
        repeat=args.repeat, quick=args.quick, callgrind=True, out_dir=os.path.join(HERE, "results", "checks"))
    result = bench.run(config, progress=lambda done, total, label: print(
        f"\r{done}/{total} {label:60.60}", end="", file=sys.stderr, flush=True))
    print(file=sys.stderr)
    if result.failures:
        print("\n".join(result.failures), file=sys.stderr)

    rows = []
    for workload in result.workloads:
        ratio = workload.ratio(paths["checked"], "wall_time", to=paths["unchecked"])
        hardened = [workload.ratio(paths["hardened"], measure, to=paths["checked"])
                    for measure in ("wall_time", "max_rss")]
        rows.append((workload.name, ratio, *hardened))
    per_pair = result.callgrind.per_pair if result.callgrind else {}
    print(f"\n{bench.cpu_model()}, {args.repeat} interleaved runs each, medians\n")
    print("| workload | checked / unchecked wall time | hardened / checked wall time "
          "| hardened / checked peak RSS |")
    print("|---|---:|---:|---:|")
    for name, *ratios in rows:
        print(f"| {name} | " + " | ".join(f"{r:.3f}" if r else "n/a" for r in ratios) + " |")
    checked, unchecked = per_pair.get(paths["checked"]), per_pair.get(paths["unchecked"])
    hardened = per_pair.get(paths["hardened"])
    if checked and unchecked:
        print(f"\nInstructions per malloc+free pair (callgrind): checked {checked:.1f}, "
              f"unchecked {unchecked:.1f}, hardened {hardened or 0:.1f}, "
              f"glibc {per_pair.get(GLIBC) or 0:.1f}")
    patterns = result.callgrind.patterns if result.callgrind else {}
    for pattern, counts in patterns.items():
        print(f"  {pattern}: " + ", ".join(f"{name} {counts.get(path) or 0:.1f}"
                                         for name, path in [*paths.items(), ("glibc", GLIBC)]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"ratios": {name: ratios for name, *ratios in rows},
                       "per_pair": {"checked": checked, "unchecked": unchecked,
                                    "hardened": hardened}}, f, indent=2)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
