"""What the subcommands share in how they talk to people: the width everything fits,
the label column, wrapping, signed deltas, the help texts of the allocator and option
arguments, list and size arguments, and the progress bar on stderr.
"""


import re
import shutil
import sys
import textwrap

from .. import bench, preload
from ..errors import PymallocError
from ..kernel.space import size_text


WIDTH = 100                 # text is wrapped to the terminal, at most this wide


NARROWEST = 60              # below this, wrapping costs more than it saves


def terminal_columns():
    """The terminal's width (COLUMNS, else the terminal of stdout, else 100)."""
    return shutil.get_terminal_size((WIDTH, 24)).columns


def width():
    """The width text is wrapped to: the terminal's, between NARROWEST and WIDTH."""
    return max(NARROWEST, min(WIDTH, terminal_columns()))


LABEL = 11                  # width of the label column of a step's details


INDENT = " " * (2 + LABEL)


# ---- run and compare ----------------------------------------------------------------------------

ALLOCATOR_HELP = (f"{', '.join(preload.ALLOCATORS)}, or the path of a shared library "
                   "to preload")


OPTION_HELP = (f"an option for pymalloc_real's library (repeatable, or comma-separated): "
                f"{', '.join(preload.OPTION_KEYS)}")


def command_argv(args):
    argv = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not argv:
        raise preload.OptionError(f"no command given: pymalloc-real {args.command} "
                                  "[OPTIONS] -- CMD [ARG ...]")
    return argv


def names_list(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def ops_list(items):
    ops = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value.strip().isdigit() or int(value) < 1:
            raise bench.BenchError(f"--ops takes NAME=N with N a positive integer: {item!r}")
        ops[name.strip()] = int(value)
    return ops


class ProgressBar:
    """A text bar on stderr: redrawn in place on a terminal, a line per tenth done
    otherwise (so a log shows progress without a line per run)."""

    def __init__(self, name, width=30):
        self.name, self.width, self.tty = name, width, sys.stderr.isatty()
        self.shown_tenth = -1

    def __call__(self, done, total, label):
        columns = width()
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        bar = f"{self.name}: [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if self.tty:
            text = f"{bar} {label}"[:columns - 1] if done < total else ""
            sys.stderr.write(f"\r{text:<{columns - 1}}\r")
        elif int(fraction * 10) > self.shown_tenth:
            self.shown_tenth = int(fraction * 10)
            sys.stderr.write(f"{bar} {label}".rstrip() + "\n")
        sys.stderr.flush()


def byte_size(text, option="--region"):
    match = re.fullmatch(r"(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?", text.strip())
    if not match:
        raise PymallocError(f"{option} takes a size such as 64M or 1G, not {text!r}")
    return int(match[1]) << {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[match[2].lower()]


# ---- text helpers ----------------------------------------------------------------------------

def detail(label, text):
    print(wrap(text, f"  {label:<{LABEL}}"))


def wrap(text, first, rest=None):
    return textwrap.fill(text, width(), initial_indent=first,
                         subsequent_indent=rest if rest is not None else
                         (INDENT if first else ""), break_on_hyphens=False)


def delta(n):
    return "unchanged" if n == 0 else f"{n:+d} B, {'+' if n > 0 else '-'}{size_text(abs(n))}"
