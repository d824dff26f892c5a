"""How every subcommand fails and ends, in one place: a user's mistake is one line on
stderr saying what was wrong and what is valid, exit status 2; Ctrl-C ends any command
quietly with status 130 (the wing that started a child stops it on the way out); a
closed pipe ends the output without a word. Also the argument types that say what a
valid number is, and the checks of output paths made before any work starts.

A new subcommand gets all of this by raising ``UsageError`` (or a wing's own error) and
using these types and checks; ``main`` in ``__init__`` calls ``run_command``.
"""


import argparse
import os
import sys

from ..errors import PymallocError


EXIT_USAGE = 2              # a user's mistake, or an error that stopped the command
EXIT_INTERRUPTED = 130      # 128 + SIGINT, as a shell reports a command Ctrl-C ended


class UsageError(PymallocError, ValueError):
    """A mistake on the command line: the message says what was wrong and what is
    valid."""


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line (argparse prints the usage first)
    naming the subcommand, and which never exits: ``run_command`` turns them into
    status 2. Subparsers inherit the class."""

    def error(self, message):
        error = UsageError(f"{message} (see {self.prog} --help)")
        error.prog = self.prog
        raise error


# ---- ending a command ------------------------------------------------------------------------

def run_command(parser, argv, no_command=None):
    """Parse ``argv`` and run the chosen subcommand's ``run(args)``; return the exit
    status. ``no_command(parser)`` runs when no subcommand is given."""
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        prog = f"{parser.prog} {args.command}" if args.command else prog
        if args.command is None:
            return no_command(parser)
        return args.run(args)
    except SystemExit as exit:          # --help and --version end here
        return exit.code
    except KeyboardInterrupt:
        # Whoever started a child killed and reaped it while this unwound (runner's
        # _reap, subprocess.run, pagesim's recorder); nothing is left to say. On a
        # terminal, end the line a progress counter or the ^C echo left open.
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and keep Python's flush at
        # exit from failing on the closed pipe too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (PymallocError, MemoryError, OSError, ImportError) as error:
        report(getattr(error, "prog", prog), error)
        return EXIT_USAGE


def report(prog, error):
    """The one line of an error: the command, "error:", the message on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    print(f"{prog}: error: {text}", file=sys.stderr)


# ---- argument types: what a valid number is --------------------------------------------------

def positive_int(text):
    """An argparse type: an integer >= 1."""
    return _number(text, int, "an integer", lambda n: n >= 1, "at least 1")


def non_negative_int(text):
    """An argparse type: an integer >= 0."""
    return _number(text, int, "an integer", lambda n: n >= 0, "0 or more")


def positive_float(text):
    """An argparse type: a number of seconds > 0 (finite)."""
    return _number(text, float, "a number", lambda n: 0 < n < float("inf"), "above 0")


def _number(text, kind, what, valid, valid_text):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}: give {what} "
                                         f"{valid_text}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range: give {what} {valid_text}")
    return value


# ---- output paths, checked before the work starts ---------------------------------------------

def check_output_file(path, option):
    """Raise UsageError unless ``path`` can be written as a file: not a directory, in
    an existing directory this process may write."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory; give the path of a file")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{option} {path}: the directory {directory} does not exist; give "
                         "a file in an existing directory")
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(path)
                                                      and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: not writable; give a file in a directory you "
                         "may write")


def check_output_directory(path, option):
    """Raise UsageError unless ``path`` is a directory this process may write, or can
    be created (its nearest existing ancestor is a writable directory)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a file; give a directory (created when "
                         "missing)")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"{option} {path}: {existing} is a file; give a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} is not writable; give a directory "
                         "you may write")
