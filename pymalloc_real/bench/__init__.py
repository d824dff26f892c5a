"""Benchmarks: every workload on every allocator in one run (`pymalloc-real bench`),
judged against targets, written to results.json, results.md and results.png.

``workloads`` knows the programs and their contract, ``harness`` plans, runs and checks
them, ``callgrind`` counts instructions per malloc+free pair in three patterns (cached,
4 KiB, mixed) and holds their record and section of results.md, ``results`` holds the
other records, the targets and their text forms, ``files`` writes the output directory.
This wing uses the running-programs wing (``preload``) and the errors; nothing here
prints.
"""
from .callgrind import (CALLGRIND_OPS, PATTERNS, Callgrind, Pattern, PatternCount,
                        callgrind_by_object, callgrind_plan, measure_callgrind,
                        measure_patterns)
from .harness import (QUICK_REPEAT, REPEAT, BenchConfig, Plan, cpu_model, execute, git_commit,
                      machine, plan, run)
from .results import (METRICS, RESULT_FILES, BenchResult, Cell, Run, Target,
                      TargetRow, WorkloadResult, geometric_mean, markdown, meets, result_dict,
                      target_rows, targets)
from .workloads import (C_FLAGS, CHECKSUM, ORDER, PYTHON_SCRIPT, BenchError, BuildError,
                        Workload, available_workloads, build, default_bench_dir,
                        generate_c_program, select_workloads)
from .files import draw_chart, write_results

__all__ = ["run", "plan", "execute", "BenchConfig", "Plan", "BenchResult", "WorkloadResult",
           "Cell", "Run", "Callgrind", "Target", "TargetRow", "BenchError", "BuildError",
           "Workload", "available_workloads", "select_workloads", "default_bench_dir",
           "build", "generate_c_program", "measure_callgrind", "callgrind_by_object",
           "measure_patterns", "callgrind_plan", "Pattern", "PatternCount", "PATTERNS",
           "machine", "cpu_model", "git_commit", "targets", "target_rows", "geometric_mean",
           "meets", "result_dict", "markdown", "write_results", "draw_chart", "METRICS",
           "RESULT_FILES", "CALLGRIND_OPS", "C_FLAGS", "CHECKSUM", "ORDER", "PYTHON_SCRIPT",
           "REPEAT", "QUICK_REPEAT"]
