"""`pymalloc-real run -- CMD`: a command on one allocator (LD_PRELOAD) and what it cost:
exit status, times, peak RSS, page faults and our library's statistics.
"""


import argparse
import json
import shlex
import sys

from .. import preload
from ..kernel.space import size_text
from .errors import positive_float
from .text import LABEL, ALLOCATOR_HELP, OPTION_HELP, command_argv, wrap


def add_parser(commands):
    run = commands.add_parser(
        "run", help="run a command on one allocator and report what it cost",
        description="Run CMD with LD_PRELOAD set to an allocator's library and report its "
                    "exit, wall and CPU time, peak RSS and page faults (from wait4), and for "
                    "pymalloc_real the statistics its library writes at exit. The command's "
                    "output passes through and the report goes to stderr; with --json the "
                    "output is captured into the JSON report on stdout. Exit status: the "
                    "command's (128 + N when signal N killed it), 2 on an error.")
    run.add_argument("--allocator", "-a", default=preload.OURS, metavar="NAME",
                     help=f"{ALLOCATOR_HELP} (default: {preload.OURS})")
    run.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help=OPTION_HELP)
    run.add_argument("--timeout", type=positive_float, metavar="SECONDS",
                     help="kill the command (SIGKILL) when it runs longer")
    run.add_argument("--no-stats", action="store_true",
                     help="do not collect pymalloc_real's statistics")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...",
                     help="the command and its arguments, after --")
    run.set_defaults(run=_run)


def _run(args):
    argv = command_argv(args)
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
    lines = [wrap(f"pymalloc-real run: {shlex.join(report.command)}", "")]
    lines += [wrap(text, f"  {label:<{LABEL}}") for label, text in rows]
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
        lines.append(wrap(text, f"    {key:<{width}}  ", " " * (width + 6)))
    return lines


def _stat_value(value):
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value) if not isinstance(value, (dict, list)) else json.dumps(value)
    return f"{value:,}"
