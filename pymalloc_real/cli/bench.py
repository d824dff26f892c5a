"""`pymalloc-real bench`: every benchmark workload on every allocator, with a progress
bar, the tables, the targets and the files written.
"""


import json
import sys

from .. import bench, preload
from .tables import fit, markdown_argument
from .errors import check_output_directory, positive_float, positive_int
from .text import ALLOCATOR_HELP, ProgressBar, names_list, ops_list


# ---- bench -------------------------------------------------------------------------------------

def add_parser(commands):
    parser = commands.add_parser(
        "bench", help="every benchmark workload on every allocator, with ratios to glibc",
        description="Build the workloads of benchmarks/workloads/ (gcc -O2 -g -pthread into "
                    "benchmarks/bin/, when a source is newer), then run each workload, and "
                    "CPython and gcc as real programs, on every allocator with interleaved "
                    "repeats. Prints medians (min-max) of wall time, peak RSS and page "
                    "faults with ratios to glibc, and the targets, and writes results.json, "
                    "results.md and results.png into the output directory. A run counts only "
                    "when it exits 0 with the checksum the other allocators' runs agree on. "
                    "A missing allocator is named with how to install it (`make peers`) and "
                    "the others run. Exit status: 0 when every run passed, 1 when a run was "
                    "rejected or a workload did not build, 2 on an error.")
    parser.add_argument("--quick", action="store_true",
                        help=f"small -n per workload and {bench.QUICK_REPEAT} runs each "
                             "(about 50 s on 2 CPUs)")
    parser.add_argument("--workloads", metavar="A,B,...",
                        help=f"comma-separated (default: all of {', '.join(bench.ORDER)} "
                             "that are there)")
    parser.add_argument("--allocators", default=",".join(preload.ALLOCATORS),
                        metavar="A,B,...", help=f"comma-separated; each one of "
                                                f"{ALLOCATOR_HELP} (default: all five)")
    parser.add_argument("--repeat", type=positive_int, metavar="N",
                        help=f"runs per workload and allocator (default {bench.REPEAT}, "
                             f"{bench.QUICK_REPEAT} with --quick)")
    parser.add_argument("--ops", "-n", action="append", default=[], metavar="NAME=N",
                        help="-n for one workload (repeatable), instead of its default")
    parser.add_argument("--threads", "-t", type=positive_int, metavar="N",
                        help="threads of the multi-threaded workloads (larson, prodcons; "
                             "default: the CPUs usable, at least 2)")
    parser.add_argument("--seed", "-s", type=int, default=1, help="-s of every workload")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per malloc+free pair under valgrind "
                             "--tool=callgrind in three patterns, each a workload at two -n: "
                             "cached (pairs), 4 KiB (page_pairs) and mixed (mixed)")
    parser.add_argument("--out", metavar="DIR",
                        help="where results.json/.md/.png go (default benchmarks/results)")
    parser.add_argument("--bench-dir", metavar="DIR",
                        help="the directory holding workloads/ and pyworkload.py (default: "
                             "the source tree's benchmarks/)")
    parser.add_argument("--timeout", type=positive_float, default=900, metavar="SECONDS",
                        help="kill a run (SIGKILL) after this long (default 900)")
    parser.add_argument("--json", action="store_true",
                        help="print results.json to stdout instead of the tables")
    markdown_argument(parser)
    parser.set_defaults(run=_bench)


def _bench(args):
    if args.out:
        check_output_directory(args.out, "--out")
    config = bench.BenchConfig(
        workloads=names_list(args.workloads) if args.workloads else None,
        allocators=names_list(args.allocators), repeat=args.repeat, quick=args.quick,
        ops=ops_list(args.ops), threads=args.threads, seed=args.seed, bench_dir=args.bench_dir,
        out_dir=args.out, callgrind=args.callgrind, timeout=args.timeout)
    plan = bench.plan(config)
    for name, message in plan.missing.items():
        # One unwrapped line, like compare's: it holds a command to copy.
        print(f"pymalloc-real bench: {name} skipped: {message}", file=sys.stderr)
    result = bench.execute(plan, progress=ProgressBar("bench"))
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(fit(result.markdown(), args.markdown), end="")
        print(f"Written: {', '.join(result.files.values())}")
    if not result.ok:
        print(f"pymalloc-real bench: {len(result.failures)} run(s) rejected or workload(s) "
              "not built (see Checks)", file=sys.stderr)
    return 0 if result.ok else 1
