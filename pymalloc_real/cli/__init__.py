"""The ``pymalloc-real`` command: one module per subcommand, each adding its parser
(``add_parser``) and printing what it has to say, for people (tables, diagrams) and
programs (``--json``). The command line is the only part of the package that prints,
and nothing else in the package imports it.

Subcommands: ``demo``, the seed articles replayed on real memory in
seven steps; ``maps [PID]``, a process's address space grouped by kind; ``run``, a
command on one allocator (LD_PRELOAD) with what it cost; ``compare``, a command on
several allocators side by side; ``bench``, every benchmark workload on every allocator;
``pagesim``, the page-replacement algorithms over a trace (or a command run under lackey);
``trace``, a command's allocation calls recorded into a trace file;
``replay``, a malloc trace replayed under the placement policies of the lab;
``heap``, our heap after a known sequence of operations, as text (``heapview``), or
(``heap PID``) a running program's; ``top PID``, a running program's counters;
``report``, a command's memory (call sites, timeline, heap map) as one HTML page.
``text`` holds what they share in how they print, ``tables`` how a table fits the
terminal, ``errors`` how every command fails and ends (a user's mistake: one line on
stderr and status 2; Ctrl-C: status 130). Without a subcommand the command prints its
usage.
"""
from .. import __version__
from . import bench, compare, demo, heap, maps, pagesim, replay, report, run, top, trace
from .errors import Parser, run_command
from .text import WIDTH

__all__ = ["main", "WIDTH"]

# In the order `--help` lists them.
SUBCOMMANDS = (demo, maps, heap, top, run, compare, bench, pagesim, trace, replay, report)


def main(argv=None):
    """Run the command line with ``argv`` (default: sys.argv[1:]); return the exit code:
    0 when every applicable prediction held, 1 when one did not, 2 on an error, 130 on
    Ctrl-C (for ``run``, the command's own exit code; for ``compare``, 1 when a run
    failed or the outputs differ; for ``bench``, 1 when a run was rejected). Without a
    subcommand, the usage and the list of subcommands, status 0."""
    return run_command(_parser(), argv, no_command=_usage)


def _usage(parser):
    parser.print_help()
    return 0


def _parser():
    parser = Parser(
        prog="pymalloc-real",
        description="A real ptmalloc-style allocator on brk and mmap: see what malloc and "
                    "the kernel do. `pymalloc-real demo` replays the seed articles on real "
                    "memory; `pymalloc-real COMMAND --help` says more of each command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser
