"""The ``pymalloc-real`` command: argument parsing and everything printed for people
(tables, diagrams) and programs (``--json``). The only module of the package that prints.

Subcommands: ``demo`` (the default), the seed articles replayed on real memory in
seven steps; ``maps [PID]``, a process's address space grouped by kind; ``run``, a
command on one allocator (LD_PRELOAD) with what it cost; ``compare``, a command on
several allocators side by side; ``bench``, every benchmark workload on every allocator;
``pagesim``, the page-replacement algorithms over a trace (or a command run under lackey);
``trace``, a command's allocation calls recorded into a trace file;
``replay``, a malloc trace replayed under the placement policies of the lab.
"""
import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import sys
import textwrap

from . import __version__, bench, demo, pagesim, preload, procfs
from . import trace as tracing
from .demo import AGREES, DISAGREES, NOT_APPLICABLE
from .errors import PymallocError
from .space import size_text

WIDTH = 100                 # everything printed fits a terminal this wide
LABEL = 11                  # width of the label column of a step's details
_INDENT = " " * (2 + LABEL)
_COUNTER_NAMES = {"brk_moves": "brk", "mmap_calls": "mmap", "munmap_calls": "munmap",
                  "trims": "trim"}


def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); return the exit code:
    0 when every applicable prediction held, 1 when one did not, 2 on an error (for
    ``run``, the command's own exit code; for ``compare``, 1 when a run failed or the
    outputs differ; for ``bench``, 1 when a run was rejected)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:      # --help, --version and usage errors stop here
        return exit.code
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and keep Python's flush at
        # exit from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (PymallocError, MemoryError, OSError, ImportError) as error:
        print(f"pymalloc-real {args.command or 'demo'}: error: {error}", file=sys.stderr)
        return 2


def _parser():
    parser = argparse.ArgumentParser(
        prog="pymalloc-real",
        description="A real ptmalloc-style allocator on brk and mmap: see what malloc and "
                    "the kernel do. Without a subcommand, runs the demo.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(run=_demo, json=False, step=None, plot=None, command=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    steps = "; ".join(f"{n} {title}" for n, (title, _, _) in demo.STEPS.items())
    run = commands.add_parser(
        "demo", help="replay the seed articles on real memory, step by step",
        description=f"Replay the seed articles on real memory, in this process: {steps}. "
                    "Each step states the seeds' prediction and whether the real run agrees, "
                    "with the program break, the page faults, the core's chunks and the "
                    "address space around the heap. Exit status: 0 if every applicable "
                    "prediction held, 1 if one did not, 2 on an error.")
    run.add_argument("--step", type=int, choices=sorted(demo.STEPS), metavar="N",
                     help="run only step N (0 to %d)" % max(demo.STEPS))
    run.add_argument("--json", action="store_true",
                     help="print the steps as one JSON document instead of the report")
    run.add_argument("--plot", metavar="DIR",
                     help="also write one PNG per step into DIR (needs matplotlib)")
    run.set_defaults(run=_demo)

    maps = commands.add_parser(
        "maps", help="a process's address space, grouped by kind, with totals",
        description="Print /proc/PID/maps (this process by default) grouped by kind (heap, "
                    "stack, anonymous, file, vdso, other), each region annotated, with "
                    "totals per kind.")
    maps.add_argument("pid", nargs="?", type=int, help="process id (default: this process)")
    maps.add_argument("--json", action="store_true", help="print JSON instead of the table")
    maps.set_defaults(run=_maps)
    _add_run_parser(commands)
    _add_compare_parser(commands)
    _add_bench_parser(commands)
    _add_pagesim_parser(commands)
    _add_trace_parser(commands)
    _add_replay_parser(commands)
    return parser


# ---- demo -----------------------------------------------------------------------------------

def _demo(args):
    numbers = [args.step] if args.step is not None else sorted(demo.STEPS)
    # Fail before the run without matplotlib, but import it only after the run: loading
    # it grows the interpreter's heap and maps, and the experiments should not pay.
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    if not args.json:
        _print_header()
    steps = []
    for number in numbers:      # one at a time, so people see each step as it ends
        step = demo.run([number])[0]
        steps.append(step)
        if not args.json:
            _print_step(step)
    pictures = []
    if args.plot:
        from . import plots
        pictures = plots.write_pictures(steps, args.plot)
    if args.json:
        json.dump(_demo_document(steps, pictures), sys.stdout, indent=2)
        print()
    else:
        _print_summary(steps, pictures)
    return 1 if any(step.verdict == DISAGREES for step in steps) else 0


def _demo_document(steps, pictures):
    verdicts = [step.verdict for step in steps]
    return {"version": __version__, "pid": os.getpid(), "page_size": procfs.page_size(),
            "thp": procfs.thp_setting(), "fault_slack": demo.FAULT_SLACK,
            "summary": {"agrees": verdicts.count(AGREES),
                        "disagrees": verdicts.count(DISAGREES),
                        "not_applicable": verdicts.count(NOT_APPLICABLE)},
            "steps": [step.as_dict() for step in steps], "pictures": pictures}


def _print_header():
    print(f"pymalloc-real demo: the seed articles replayed on real memory (pid {os.getpid()})")
    print(_wrap(f"Page size {procfs.page_size()} B. Transparent huge pages: "
                f"{procfs.thp_setting()}; every block whose page faults are counted is marked "
                "MADV_NOHUGEPAGE, so one fault means one page. Fault counts may exceed a "
                f"prediction by up to {demo.FAULT_SLACK}: the interpreter's own pages.", ""))


def _print_step(step):
    print()
    title = f"== Step {step.number}: {step.title} "
    print(f"{title:=<{WIDTH - len(step.verdict) - 1}} {step.verdict}")
    _detail("predicted", step.prediction)
    _detail("observed" if step.verdict != NOT_APPLICABLE else "why n/a", step.reason)
    for label, text in step.observations:
        _detail(label, text)
    for number, operation in enumerate(step.operations, 1):
        _print_operation(number, len(step.operations), operation)
    if step.operations:
        print()
    _detail("break", f"{step.break_before:#x} -> {step.break_after:#x}  "
                     f"({_delta(step.break_after - step.break_before)})")
    _detail("faults", f"{step.minor_faults:+d} minor, {step.major_faults:+d} major over the "
                      "whole step, the interpreter's own included")
    if not step.operations:     # the walk-through shows the chunks after each operation
        names = {address: name for name, address in step.names.items()}
        lines = _chunk_lines(step.chunks, names) or ["none: the core holds no memory"]
        for line, text in enumerate(lines):
            _detail("chunks" if line == 0 else "", text)
    if step.space:
        _detail("memory", f"{step.moment} (high addresses on top):")
        for line in _space_lines(step.space):
            print(line)


def _print_operation(number, total, op):
    print()
    title = f"  [{number}/{total}] {op.operation} "
    verdict = "agrees" if op.held else "DISAGREES"
    print(f"{title:-<{WIDTH - len(verdict) - 1}} {verdict}")
    _detail("predicted", op.prediction)
    _detail("observed", op.reason)
    _detail("break", f"{op.break_before:#x} -> {op.break_after:#x}  ({_delta(op.break_delta)})")
    where = "mmapped chunk" if op.mmapped else "heap chunk"
    _detail(op.block, f"{op.address:#x}, {where}, {op.size} B requested")
    touched = f" (touched {op.touched_pages} pages)" if op.touched_pages else ""
    counters = ", ".join(f"{_COUNTER_NAMES[k]} {v:+d}" for k, v in op.counters.items())
    _detail("kernel", f"faults {op.minor_faults:+d} minor, {op.major_faults:+d} major"
                      f"{touched}; {counters or 'no brk, mmap, munmap or trim'}")
    names = {address: name for name, address in op.blocks.items()}     # B2 overrides B
    for line, text in enumerate(_chunk_lines(op.chunks, names)):
        _detail("chunks" if line == 0 else "", text)
    if op.heap_map:
        _detail("maps", op.heap_map)
    if op.mmapped:
        end = op.address + op.size
        _detail("", f"{op.block_map}  <- {op.block}" if op.block_map else
                f"nothing maps {op.address:#x}-{end:#x} any more ({op.block}'s memory)")


def _chunk_lines(chunks, names):
    """One line per chunk of our heap (which block, where, kind, size, flags, state);
    a run of identical unnamed chunks is one line, "64 x"."""
    lines, previous, count = [], None, 0
    for chunk in chunks:
        name = names.get(chunk.mem, "") if chunk.kind in ("chunk", "mmapped") else ""
        state = "in use" if chunk.in_use else f"free, {chunk.bin} bin" if chunk.bin else "free"
        text = (f"{chunk.kind:<7} {chunk.size:>9} B {'(' + size_text(chunk.size) + ')':<9} "
                f"{chunk.flags}  {state}")
        if not name and previous == text:
            count += 1
            lines[-1] = f"{count:>2} x {'':16} {text}"
            continue
        previous, count = (None if name else text), 1
        lines.append(f"{name:<4} {chunk.address:#014x}  {text}")
    return lines


_AREAS = {"stack": "stack", "mapping": "mmap area", "heap": "heap", "program": "program"}


def _space_lines(bands):
    """The address-space diagram: one line per band, its notes below it, and the name
    of each area beside its first band."""
    width = max(len(f"{band.start:x}-{band.end:x}") for band in bands)
    lines, area = [], None
    for band in bands:
        span = f"{band.start:x}-{band.end:x}"
        name = _AREAS[band.area] if band.area and band.area != area else ""
        area = band.area or area
        if band.kind == "gap":
            lines.append(f"  {'':11}{'~' * width}  {band.label}, {size_text(band.end - band.start)}")
            continue
        lines.append(f"  {name:<11}{span:>{width}} {size_text(band.mapped):>7} {band.perms:4} "
                     f"{band.label}"[:WIDTH])
        lines += [_wrap(note, " " * 15, " " * 17) for note in band.notes]
    return lines


def _print_summary(steps, pictures):
    print()
    verdicts = [step.verdict for step in steps]
    print(_wrap("Summary: " + ", ".join(f"step {s.number} {s.verdict}" for s in steps) + ".", ""))
    disagree = [str(s.number) for s in steps if s.verdict == DISAGREES]
    line = (f"{verdicts.count(AGREES)} of {len(steps)} steps agree with the seeds, "
            f"{len(disagree)} disagree{' (step ' + ', '.join(disagree) + ')' if disagree else ''}, "
            f"{verdicts.count(NOT_APPLICABLE)} not applicable on this machine.")
    print(_wrap(line, ""))
    if pictures:
        print(_wrap("Pictures: " + ", ".join(pictures), ""))


# ---- maps -------------------------------------------------------------------------------------

def _maps(args):
    own = args.pid is None or args.pid == os.getpid()
    try:
        regions = procfs.maps(None if own else args.pid)
    except FileNotFoundError:
        raise OSError(f"no process {args.pid}") from None
    except PermissionError:
        raise OSError(f"no permission to read /proc/{args.pid}/maps") from None
    totals = procfs.totals_by_kind(regions)
    brk = procfs.brk() if own else None
    pid = os.getpid() if own else args.pid
    heaps = [region for region in regions if region.kind == "heap"]
    notes = [_region_notes(region, brk, bool(heaps) and region is heaps[-1]) for region in regions]
    if args.json:
        json.dump({"pid": pid, "break": brk, "totals": totals,
                   "regions": [dict(dataclasses.asdict(r), size=r.size, notes=n)
                               for r, n in zip(regions, notes)]}, sys.stdout, indent=2)
        print()
        return 0
    print(f"/proc/{pid}/maps ({_command_name(pid)}): {len(regions)} regions, "
          f"{size_text(sum(r.size for r in regions))} mapped")
    for kind in procfs.KINDS:
        group = [(r, n) for r, n in zip(regions, notes) if r.kind == kind]
        if group:
            print()
            print(f"{kind}: {len(group)} region{'s' * (len(group) > 1)}, {size_text(totals[kind])}")
            for region, region_notes in group:
                _print_region(region, region_notes)
    print()
    text = ", ".join(f"{kind} {size_text(totals[kind])}" for kind in procfs.KINDS)
    print(_wrap(f"totals: {text}; ours (pymalloc_real's heap and mmapped chunks) "
                f"{size_text(totals['ours'])}", ""))
    return 0


def _print_region(region, notes):
    path = region.path if len(region.path) <= 48 else "..." + region.path[-45:]
    print(f"  {region.start:x}-{region.end:x} {size_text(region.size):>7} {region.perms} "
          f"{path}".rstrip())
    for note in notes:
        print(_wrap(note, " " * 6, " " * 8))


def _region_notes(region, brk, top_of_heap):
    """What a maps line means: code or data of a file, the break (at the end of the
    highest [heap] line), the parts that are ours."""
    notes = []
    if region.kind == "file":
        notes.append("code (text)" if "x" in region.perms else
                     "data" if "w" in region.perms else "read-only data")
    if top_of_heap:
        notes.append("ends at the program break (rounded up to a page)" if brk is None else
                     f"the program break {brk:#x}")
    notes += [f"ours: {what} {start:#x}-{end:#x} ({size_text(end - start)})"
              for start, end, what in region.ours]
    return notes


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "?"


# ---- run and compare ----------------------------------------------------------------------------

_ALLOCATOR_HELP = (f"{', '.join(preload.ALLOCATORS)}, or the path of a shared library "
                   "to preload")
_OPTION_HELP = (f"an option for pymalloc_real's library (repeatable, or comma-separated): "
                f"{', '.join(preload.OPTION_KEYS)}")


def _add_run_parser(commands):
    run = commands.add_parser(
        "run", help="run a command on one allocator and report what it cost",
        description="Run CMD with LD_PRELOAD set to an allocator's library and report its "
                    "exit, wall and CPU time, peak RSS and page faults (from wait4), and for "
                    "pymalloc_real the statistics its library writes at exit. The command's "
                    "output passes through and the report goes to stderr; with --json the "
                    "output is captured into the JSON report on stdout. Exit status: the "
                    "command's (128 + N when signal N killed it), 2 on an error.")
    run.add_argument("--allocator", "-a", default=preload.OURS, metavar="NAME",
                     help=f"{_ALLOCATOR_HELP} (default: {preload.OURS})")
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help=_OPTION_HELP)
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="kill the command (SIGKILL) when it runs longer")
    run.add_argument("--no-stats", action="store_true",
                     help="do not collect pymalloc_real's statistics")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                     help="the command and its arguments, after --")
    run.set_defaults(run=_run)


def _add_compare_parser(commands):
    compare = commands.add_parser(
        "compare", help="run a command on several allocators, side by side",
        description="Run CMD on each allocator, REPEAT times, interleaved (each round starts "
                    "one allocator further along), and print a Markdown table of medians and "
                    "ranges of wall time, CPU time, peak RSS and minor faults, with ratios to "
                    "the baseline. Checks that every run exited 0 and printed the same "
                    "stdout. A peer that is not installed is reported as missing (`make "
                    "peers` installs them). Exit status: 0 when every run succeeded with the "
                    "same output, 1 otherwise, 2 on an error.")
    compare.add_argument("--allocators", default=",".join(preload.ALLOCATORS),
                         metavar="A,B,...", help=f"comma-separated; each one of "
                                                 f"{_ALLOCATOR_HELP} (default: all five)")
    compare.add_argument("--repeat", "-n", type=int, default=5, metavar="N",
                         help="runs per allocator (default 5)")
    compare.add_argument("--warmup", type=int, default=0, metavar="N",
                         help="rounds run first and not counted (default 0)")
    compare.add_argument("--baseline", default=preload.GLIBC, metavar="NAME",
                         help="the allocator the ratios are to (default glibc)")
    compare.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                         help=_OPTION_HELP)
    compare.add_argument("--timeout", type=float, metavar="SECONDS",
                         help="kill a run (SIGKILL) when it runs longer")
    compare.add_argument("--no-check-stdout", action="store_true",
                         help="do not require the same stdout from every run")
    compare.add_argument("--json", action="store_true", help="print the result as JSON")
    compare.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                         help="the command and its arguments, after --")
    compare.set_defaults(run=_compare)


def _command_argv(args):
    argv = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not argv:
        raise preload.OptionError(f"no command given: pymalloc-real {args.command} "
                                  "[OPTIONS] -- CMD [ARG ...]")
    return argv


def _run(args):
    argv = _command_argv(args)
    options = preload.parse_options(",".join(args.option))
    report = preload.run(argv, allocator=args.allocator, options=options or None,
                         stats=not args.no_stats, timeout=args.timeout, capture=args.json)
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        for line in _run_lines(report, options):
            print(line, file=sys.stderr)
    return report.shell_status


def _run_lines(report, options):
    """The report for people: what ran on what, how it ended, what it cost."""
    library = f" ({report.library})" if report.library else " (no preload)"
    if report.signal is None:
        ending = f"status {report.exit_status}"
    else:
        ending = (f"killed by {report.signal_name} (signal {report.signal})"
                  + (", sent after the timeout" if report.timed_out else ""))
    rows = [("allocator", report.allocator + library)]
    if options:
        rows.append(("options", ", ".join(f"{k}={v}" for k, v in options.items())))
    rows += [("exit", ending),
             ("wall", f"{report.wall_time:.3f} s"),
             ("CPU", f"{report.cpu_time:.3f} s ({report.user_time:.3f} s user, "
                     f"{report.system_time:.3f} s system)"),
             ("peak RSS", f"{size_text(report.max_rss)} ({report.max_rss:,} B)"),
             ("faults", f"{report.minor_faults:,} minor, {report.major_faults:,} major")]
    if report.stats is not None and report.other_stats:     # else a note says so
        rows.append(("others", f"{len(report.other_stats)} other process(es) of the run "
                               "wrote statistics too (--json shows them)"))
    rows += [("note", note) for note in report.notes]
    lines = [_wrap(f"pymalloc-real run: {shlex.join(report.command)}", "")]
    lines += [_wrap(text, f"  {label:<{LABEL}}") for label, text in rows]
    return lines + _stats_lines(report.stats)


def _stats_lines(stats):
    """Our library's statistics, whatever their keys: a scalar per line, a nested object
    on one line without its zero entries, a list by its length."""
    if not stats:
        return []
    width = max(len(str(key)) for key in stats)
    lines = [f"  {'stats':<{LABEL}}written by the library at exit:"]
    for key, value in stats.items():
        if isinstance(value, dict):
            text = ", ".join(f"{k} {_stat_value(v)}" for k, v in value.items() if v) or "none"
        elif isinstance(value, list):
            text = f"{len(value)} entries (--json shows them)"
        else:
            text = str(value) if key == "pid" else _stat_value(value)
        lines.append(_wrap(text, f"    {key:<{width}}  ", " " * (width + 6)))
    return lines


def _stat_value(value):
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return f"{value:,}"


def _compare(args):
    argv = _command_argv(args)
    options = preload.parse_options(",".join(args.option))
    allocators = [name.strip() for name in args.allocators.split(",") if name.strip()]
    progress = _progress_line if sys.stderr.isatty() and not args.json else None
    comparison = preload.compare(argv, allocators=allocators, repeat=args.repeat,
                                 options=options or None, timeout=args.timeout,
                                 check_stdout=not args.no_check_stdout,
                                 baseline=args.baseline, warmup=args.warmup,
                                 progress=progress)
    for result in comparison.missing:
        # One unwrapped line, like the other errors: it holds a command to copy.
        print(f"pymalloc-real compare: {result.name} skipped: {result.missing}",
              file=sys.stderr)
    if args.json:
        json.dump(comparison.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(comparison.table(), end="")
    return 0 if comparison.ok else 1


def _progress_line(done, total, allocator):
    """A counter on one terminal line, rewritten in place and cleared at the end."""
    text = f"compare: run {done + 1}/{total} ({allocator})" if done < total else ""
    sys.stderr.write(f"\r{text:<{WIDTH - 1}}\r" if text else f"\r{'':<{WIDTH - 1}}\r")
    sys.stderr.flush()


# ---- bench -------------------------------------------------------------------------------------

def _add_bench_parser(commands):
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
                             "(about 40 s on 2 CPUs)")
    parser.add_argument("--workloads", metavar="A,B,...",
                        help=f"comma-separated (default: all of {', '.join(bench.ORDER)} "
                             "that are there)")
    parser.add_argument("--allocators", default=",".join(preload.ALLOCATORS),
                        metavar="A,B,...", help=f"comma-separated; each one of "
                                                f"{_ALLOCATOR_HELP} (default: all five)")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help=f"runs per workload and allocator (default {bench.REPEAT}, "
                             f"{bench.QUICK_REPEAT} with --quick)")
    parser.add_argument("--ops", "-n", action="append", default=[], metavar="NAME=N",
                        help="-n for one workload (repeatable), instead of its default")
    parser.add_argument("--threads", "-t", type=int, metavar="N",
                        help="threads of the multi-threaded workloads (larson, prodcons; "
                             "default: the CPUs usable, at least 2)")
    parser.add_argument("--seed", "-s", type=int, default=1, help="-s of every workload")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per malloc+free pair under valgrind "
                             "--tool=callgrind (the pairs workload at two -n)")
    parser.add_argument("--out", metavar="DIR",
                        help="where results.json/.md/.png go (default benchmarks/results)")
    parser.add_argument("--bench-dir", metavar="DIR",
                        help="the directory holding workloads/ and pyworkload.py (default: "
                             "the source tree's benchmarks/)")
    parser.add_argument("--timeout", type=float, default=900, metavar="SECONDS",
                        help="kill a run (SIGKILL) after this long (default 900)")
    parser.add_argument("--json", action="store_true",
                        help="print results.json to stdout instead of the tables")
    parser.set_defaults(run=_bench)


def _bench(args):
    config = bench.BenchConfig(
        workloads=_names(args.workloads) if args.workloads else None,
        allocators=_names(args.allocators), repeat=args.repeat, quick=args.quick,
        ops=_ops(args.ops), threads=args.threads, seed=args.seed, bench_dir=args.bench_dir,
        out_dir=args.out, callgrind=args.callgrind, timeout=args.timeout)
    plan = bench.plan(config)
    for name, message in plan.missing.items():
        # One unwrapped line, like compare's: it holds a command to copy.
        print(f"pymalloc-real bench: {name} skipped: {message}", file=sys.stderr)
    result = bench.execute(plan, progress=_ProgressBar("bench"))
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(result.markdown(), end="")
        print(f"Written: {', '.join(result.files.values())}")
    if not result.ok:
        print(f"pymalloc-real bench: {len(result.failures)} run(s) rejected or workload(s) "
              "not built (see Checks)", file=sys.stderr)
    return 0 if result.ok else 1


def _names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def _ops(items):
    ops = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise bench.BenchError(f"--ops takes NAME=N with N a positive integer: {item!r}")
        ops[name.strip()] = int(value)
    return ops


class _ProgressBar:
    """A text bar on stderr: redrawn in place on a terminal, a line per tenth done
    otherwise (so a log shows progress without a line per run)."""

    def __init__(self, name, width=30):
        self.name, self.width, self.tty = name, width, sys.stderr.isatty()
        self.shown_tenth = -1

    def __call__(self, done, total, label):
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        bar = f"{self.name}: [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self.tty:
            text = f"{bar} {label}"[:WIDTH - 1] if done < total else ""
            sys.stderr.write(f"\r{text:<{WIDTH - 1}}\r" if text else f"\r{'':<{WIDTH - 1}}\r")
        elif int(fraction * 10) > self.shown_tenth:
            self.shown_tenth = int(fraction * 10)
            sys.stderr.write(f"{bar} {label}".rstrip() + "\n")
        sys.stderr.flush()


# ---- pagesim -----------------------------------------------------------------------------------

def _add_pagesim_parser(commands):
    parser = commands.add_parser(
        "pagesim", help="page-replacement algorithms over a memory trace: faults by frames",
        usage="%(prog)s TRACE [options]\n       %(prog)s --record [--save FILE] [options] "
              "-- CMD [ARG ...]",
        description="Run the page-replacement algorithms of seed 001 (OPT, LRU, aging, NRU, "
                    "clock, second chance, FIFO) over TRACE for every frame count of --frames "
                    "and print the page faults as a Markdown table, with where FIFO shows "
                    "Belady's anomaly (more frames, more faults). TRACE is the output of "
                    "`valgrind --tool=lackey --trace-mem=yes` or a plain list of page numbers "
                    "(decimal or 0x-hex, a trailing w for a store). With --record, CMD is run "
                    "under lackey first (its output goes to stderr) and its trace saved. "
                    "Exit status: 0, or 2 on an error.")
    parser.add_argument("words", nargs="*", metavar="TRACE | -- CMD ...",
                        help="the trace file; with --record, the command after --")
    parser.add_argument("--record", action="store_true",
                        help="run CMD under valgrind's lackey and simulate its trace")
    parser.add_argument("--save", metavar="FILE",
                        help="where --record writes the trace (default pagesim-CMD.lackey)")
    parser.add_argument("--frames", default="1-64", metavar="RANGE",
                        help="frame counts: N, A-B, A-B:STEP, comma-separated (default 1-64)")
    parser.add_argument("--algorithms", default="all", metavar="A,B,...",
                        help=f"comma-separated, of {', '.join(pagesim.ALGORITHMS)} "
                             "(default all)")
    parser.add_argument("--format", choices=("auto", "lackey", "pages"), default="auto",
                        help="what TRACE holds (default: recognised from its first lines)")
    parser.add_argument("--page-size", type=int, default=pagesim.PAGE_SIZE, metavar="BYTES",
                        help="page size for lackey's addresses (default 4096)")
    parser.add_argument("--no-instructions", action="store_true",
                        help="leave out lackey's instruction fetches (I lines)")
    parser.add_argument("--tick", type=int, metavar="N",
                        help="references between R-bit clearings of NRU and aging "
                             "(default 4 x frames)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw faults against frames into this PNG (needs matplotlib)")
    parser.add_argument("--json", action="store_true",
                        help="print every run (faults, hits, evictions, write-backs) as JSON")
    parser.set_defaults(run=_pagesim)


def _pagesim(args):
    frames = _frame_counts(args.frames)
    algorithms = (pagesim.ALGORITHMS if args.algorithms == "all"
                  else _names(args.algorithms))
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    recording = None
    if args.record:
        if not args.words:
            raise pagesim.PagesimError("no command given: pymalloc-real pagesim --record "
                                       "[OPTIONS] -- CMD [ARG ...]")
        path = args.save or f"pagesim-{os.path.basename(args.words[0])}.lackey"
        print(f"pymalloc-real pagesim: recording {shlex.join(args.words)} under valgrind "
              f"--tool=lackey into {path}", file=sys.stderr)
        # fd 2: the command's own output must not mix with the report on stdout.
        recording = pagesim.record(args.words, path, stdout=2)
        if recording.exit_status != 0:
            print(f"pymalloc-real pagesim: {args.words[0]} exited with status "
                  f"{recording.exit_status}; simulating the trace it left", file=sys.stderr)
        trace_path, trace_format = path, "lackey"
    elif len(args.words) == 1:
        trace_path, trace_format = args.words[0], args.format
    else:
        raise pagesim.PagesimError("give one TRACE file, or --record -- CMD [ARG ...]")
    trace = pagesim.Trace.load(trace_path, trace_format, page_size=args.page_size,
                               instructions=not args.no_instructions)
    if recording:       # the plot's title names the program, not the file
        trace.description = f"{shlex.join(args.words)} under lackey"
    progress = _ProgressBar("pagesim") if sys.stderr.isatty() else None
    table = pagesim.curve(trace, frames, algorithms, tick=args.tick, progress=progress)
    anomalies = table.anomalies() if "fifo" in table.algorithms else None
    picture = table.plot(args.plot) if args.plot else None
    if args.json:
        json.dump({"trace": {"path": trace_path, "references": len(trace),
                             "pages": trace.pages, "stores": trace.stores,
                             "page_size": trace.page_size,
                             "instructions": trace.page_size is not None
                             and not args.no_instructions},
                   "recording": dataclasses.asdict(recording) if recording else None,
                   **table.as_dict(),
                   "belady_anomalies": None if anomalies is None else
                   [dataclasses.asdict(a) for a in anomalies],
                   "plot": picture}, sys.stdout, indent=2)
        print()
        return 0
    source = ("a plain list of page numbers" if trace.page_size is None else
              f"lackey, {trace.page_size}-byte pages, instruction fetches "
              f"{'left out' if args.no_instructions else 'included'}")
    print(_wrap(f"pymalloc-real pagesim: {trace_path} ({source})", ""))
    stores = f" ({trace.stores / len(trace):.1%})" if len(trace) else ""
    print(f"  {len(trace):,} references to {trace.pages:,} pages, {trace.stores:,} "
          f"stores{stores}")
    print()
    print("Page faults by frames (--json adds hits, evictions and write-backs):")
    print()
    print(table.markdown())
    if anomalies is not None:
        span = f"{min(frames)}-{max(frames)} frames"
        text = ("none for " + span if not anomalies else
                "; ".join(f"{a.frames} frames fault {a.faults:,} times, {a.fewer_frames} "
                          f"only {a.fewer_faults:,}" for a in anomalies))
        print(_wrap(f"Belady's anomaly (FIFO): {text}.", ""))
    if picture:
        print(f"Plot: {picture}")
    return 0


_MOST_FRAME_COUNTS = 10_000     # one run per count and algorithm: beyond, a typo


def _frame_counts(text):
    """'1-64', '8', '1,2,4,8', '4-64:4' -> sorted frame counts."""
    counts = set()
    for item in _names(text):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+))?", item)
        first, last, step = ((int(match[1]), int(match[2] or match[1]), int(match[3] or 1))
                             if match else (0, 0, 0))
        if first < 1 or last < first or step < 1:
            raise pagesim.PagesimError(f"--frames takes N, A-B or A-B:STEP with 1 <= A <= "
                                       f"B, comma-separated: {item!r}")
        counts.update(range(first, min(last, first + _MOST_FRAME_COUNTS * step) + 1, step))
        if len(counts) > _MOST_FRAME_COUNTS:
            raise pagesim.PagesimError(f"--frames: more than {_MOST_FRAME_COUNTS:,} frame "
                                       "counts; use a step (A-B:STEP)")
    if not counts:
        raise pagesim.PagesimError("--frames: no frame counts given")
    return sorted(counts)


# ---- replay (the placement-policy lab) --------------------------------------------------------

def _add_replay_parser(commands):
    from . import lab
    parser = commands.add_parser(
        "replay", help="a malloc trace under the placement policies: footprint, fragmentation",
        description="Replay the malloc/free/realloc trace TRACE under each placement policy "
                    "of the lab (each on its own region of real mmapped memory) and under our "
                    "ptmalloc core and glibc's malloc, and print a Markdown table: peak "
                    "footprint taken from the OS, its ratio to the peak live bytes, internal "
                    "fragmentation at the peak, external fragmentation (1 - largest free / "
                    "total free, over time), failed requests, time per op and minor faults. "
                    "TRACE is a trace file of pymalloc_real.trace or the text form (one op a "
                    "line: m ID SIZE, f ID, r ID SIZE, c ID SIZE, a ID SIZE ALIGN). "
                    "Exit status: 0, or 2 on an error.")
    parser.add_argument("trace", metavar="TRACE", help="the trace file")
    parser.add_argument("--policies", default="all", metavar="A,B,...",
                        help=f"comma-separated, of {', '.join(lab.POLICIES)} (default all)")
    parser.add_argument("--region", metavar="SIZE",
                        help="address space of each region policy, e.g. 64M, 1G "
                             "(default 256M)")
    parser.add_argument("--block-size", type=int, metavar="BYTES",
                        help="bitmap: the one block size (default 256)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the pattern checks in every block (faster, for timing)")
    parser.add_argument("--time-limit", type=float, default=30.0, metavar="SECONDS",
                        help="stop a policy after this long (the fits and the minimal "
                             "allocator are O(free blocks) per op; default 30)")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the footprint over time per policy into this PNG")
    parser.add_argument("--picture", metavar="POLICY[@OP]",
                        help="also draw POLICY's region after OP ops (default: the end) "
                             "as text")
    parser.add_argument("--json", action="store_true",
                        help="print every result, with its time series, as JSON")
    parser.set_defaults(run=_replay)


def _byte_size(text):
    match = re.fullmatch(r"(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?", text.strip())
    if not match:
        raise PymallocError(f"--region takes a size such as 64M or 1G, not {text!r}")
    return int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[match[2].lower()]


def _replay(args):
    from . import lab
    policies = lab.POLICIES if args.policies == "all" else _names(args.policies)
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise ImportError("--plot needs matplotlib: pip install 'pymalloc_real[plot]'")
    region = _byte_size(args.region) if args.region else None
    trace = lab.pack(lab.load(args.trace))
    table = lab.compare(trace, policies, region_size=region, verify=not args.no_verify,
                        block_size=args.block_size, time_limit=args.time_limit,
                        description=os.path.basename(args.trace))
    plot = table.plot(args.plot) if args.plot else None
    picture = None
    if args.picture:
        name, _, at = args.picture.partition("@")
        if at and not at.isdigit():
            raise lab.LabError(f"--picture takes POLICY or POLICY@OP, not {args.picture!r}")
        picture = lab.picture(trace, name, at_op=int(at) if at else None,
                              region_size=region, **({"block_size": args.block_size}
                                                     if name == "bitmap" and args.block_size
                                                     else {}))
    if args.json:
        json.dump({"trace": {"path": args.trace, "ops": trace.n_ops,
                             "objects": trace.n_objects},
                   **table.as_dict(), "plot": plot, "picture": picture}, sys.stdout, indent=2)
        print()
        return 0
    print(_wrap(f"pymalloc-real replay: {args.trace}", ""))
    print(f"  {trace.n_ops:,} ops on {trace.n_objects:,} objects; the replay loop alone costs "
          f"{table.loop_ns_per_op:.0f} ns/op{'' if args.no_verify else ' (ns/op below include the pattern checks)'}")
    print()
    print(table.as_table())
    print()
    print(_wrap("Footprint: region policies, the high-water mark of their region and side "
                "tables (never given back); ptmalloc and glibc, what their heaps and mmaps "
                "grew by (glibc may reuse memory it already held: below the live bytes).", ""))
    if picture:
        print()
        print(picture)
    if plot:
        print(f"Plot: {plot}")
    return 0


# ---- text helpers ----------------------------------------------------------------------------

def _detail(label, text):
    print(_wrap(text, f"  {label:<{LABEL}}"))


def _wrap(text, first, rest=None):
    return textwrap.fill(text, WIDTH, initial_indent=first,
                         subsequent_indent=rest if rest is not None else
                         (_INDENT if first else ""), break_on_hyphens=False)


def _delta(n):
    return "unchanged" if n == 0 else f"{n:+d} B, {'+' if n > 0 else '-'}{size_text(abs(n))}"


# ---- trace ----------------------------------------------------------------------------------

def _add_trace_parser(commands):
    parser = commands.add_parser(
        "trace", help="record a command's allocation calls into a trace file",
        description="Run CMD under pymalloc_real's preload library with trace= and save "
                    "the command's allocation calls (malloc, free, realloc, calloc, "
                    "memalign & co, with object ids, sizes, alignments and threads) to FILE "
                    "in the compact binary form (or text with --text). The command's "
                    "output passes through; a one-line summary goes to stderr (--json: a "
                    "JSON summary on stdout). Exit status: the command's, 2 on an error.")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="where to write the trace")
    parser.add_argument("--text", action="store_true", help="write the text form")
    parser.add_argument("--largest", action="store_true",
                        help="save the trace of the process with the most operations among "
                             "all the command started (gcc: cc1), not the command's own")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help=_OPTION_HELP)
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="kill the command (SIGKILL) when it runs longer")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                        help="the command and its arguments, after --")
    parser.set_defaults(run=_trace)


def _trace(args):
    argv = _command_argv(args)
    recording = tracing.record_run(argv, options=",".join(args.option) or None,
                                   timeout=args.timeout, capture=args.json)
    chosen = recording.largest() if args.largest else recording.trace
    if chosen is None:
        raise tracing.TraceError(f"the command's process (pid {recording.report.pid}) wrote "
                                 "no trace (exit status "
                                 f"{recording.report.exit_status}); --largest takes another "
                                 "process's")
    chosen.save(args.output, text=args.text)
    size = os.path.getsize(args.output)
    summary = chosen.summary()
    if args.json:
        json.dump(dict(dataclasses.asdict(summary), file=args.output, file_bytes=size,
                       bytes_per_op=size / max(len(chosen), 1),
                       description=chosen.description,
                       exit_status=recording.report.exit_status,
                       other_processes={pid: len(t) for pid, t in recording.others.items()}),
                  sys.stdout, indent=2)
        print()
    else:
        print(f"pymalloc-real trace: {summary.line()}; {args.output}: {size:,} bytes "
              f"({size / max(len(chosen), 1):.2f} bytes/op)", file=sys.stderr)
    return recording.report.shell_status


if __name__ == "__main__":
    sys.exit(main())
