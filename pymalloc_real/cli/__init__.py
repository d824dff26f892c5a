"""The ``pymalloc-real`` command: one module per subcommand, each adding its parser
(``add_parser``) and printing what it has to say, for people (tables, diagrams) and
programs (``--json``). The command line is the only part of the package that prints,
and nothing else in the package imports it.

Subcommands: ``demo`` (the default), the seed articles replayed on real memory in
seven steps; ``maps [PID]``, a process's address space grouped by kind; ``run``, a
command on one allocator (LD_PRELOAD) with what it cost; ``compare``, a command on
several allocators side by side; ``bench``, every benchmark workload on every allocator;
``pagesim``, the page-replacement algorithms over a trace (or a command run under lackey);
``trace``, a command's allocation calls recorded into a trace file;
``replay``, a malloc trace replayed under the placement policies of the lab;
``report``, a command's memory (call sites, timeline, heap map) as one HTML page.
``text`` holds what they share in how they print. Errors of the package's own kinds
become one line on stderr and exit status 2, here, in one place.
"""
import argparse
import os
import sys

from .. import __version__
from ..errors import PymallocError
from . import bench, compare, demo, maps, pagesim, replay, report, run, trace
from .text import WIDTH

__all__ = ["main", "WIDTH"]

# In the order `--help` lists them.
SUBCOMMANDS = (demo, maps, run, compare, bench, pagesim, trace, replay, report)


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
    parser.set_defaults(run=demo._demo, json=False, step=None, plot=None, command=None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for subcommand in SUBCOMMANDS:
        subcommand.add_parser(commands)
    return parser
