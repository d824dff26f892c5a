"""Recording a program's memory references under valgrind's lackey tool, for the
page-replacement simulator (``pagesim.record`` is this module's :func:`record`).

Lackey writes one line of about 20 bytes per load, store and instruction fetch, so
even ``python3 -c "print('x')"`` makes gigabytes in minutes. The recorder therefore
watches the trace grow: it reports its size to a ``progress`` callback and stops the
program (SIGKILL), removes the partial trace and raises :class:`TraceTooLarge` when
the trace passes ``limit`` bytes. An interruption (Ctrl-C) stops the program too and
removes the partial trace before the KeyboardInterrupt goes on.
"""
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time

from .errors import PymallocError
from .reprs import readable

__all__ = ["Recording", "record", "LackeyError", "TraceTooLarge", "DEFAULT_LIMIT"]

DEFAULT_LIMIT = 256 << 20       # bytes: `ls /` takes 11 MB, a Python start-up gigabytes
_POLL = 0.1                     # seconds between looks at the trace's size


class LackeyError(PymallocError, ValueError):
    """A program could not be recorded: no valgrind, no trace written, too slow."""


class TraceTooLarge(LackeyError):
    """The trace passed its size limit; the program was stopped, the trace removed."""


@readable
@dataclasses.dataclass(frozen=True)
class Recording:
    """A command run under lackey: its trace in ``path``, its exit status, the trace's
    size in bytes, how long the recording took (seconds), the ``pid`` traced and the
    command line it ran last (``recorded``: what a wrapper exec'd)."""
    command: tuple
    path: str
    exit_status: int
    size: int = 0
    seconds: float = 0.0
    pid: int = 0
    recorded: str = ""


def record(command, path, stdout=None, stderr=None, timeout=None, limit=DEFAULT_LIMIT,
           progress=None):
    """Run ``command`` (a list) under ``valgrind --tool=lackey --trace-mem=yes`` and
    write its memory trace into ``path`` (valgrind's log file: lackey's lines and
    valgrind's own "==pid==" messages, which the parser skips). ``stdout`` and
    ``stderr`` are the command's, as for subprocess.run. ``limit`` (bytes, None for
    none) stops the recording when the trace passes it (TraceTooLarge);
    ``progress(size, seconds)`` is called as the trace grows. Returns a
    :class:`Recording`. The trace follows the process through exec (a wrapper's trace
    is replaced by its program's); forked processes' traces are dropped."""
    command = [os.fspath(arg) for arg in command]
    path = os.fspath(path)
    if not command:
        raise LackeyError("no command to record")
    if limit is not None and limit < 1:
        raise LackeyError(f"the size limit must be at least 1 byte, not {limit}")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise LackeyError("valgrind is not installed (recording runs the command under "
                          "valgrind --tool=lackey; on Debian: apt-get install valgrind)")
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)         # so that an old trace is never taken for this one
    start = time.monotonic()
    # One log per process (%p), in a directory beside the trace so that the final move is
    # a rename: the program's own log is the one named by the pid we started.
    scratch = tempfile.mkdtemp(prefix=".lackey-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        pattern = os.path.join(scratch, "lackey.%p")
        proc = subprocess.Popen([valgrind, "--tool=lackey", "--trace-mem=yes",
                                 "--trace-children=yes", f"--log-file={pattern}", *command],
                                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        own = pattern.replace("%p", str(proc.pid))
        try:
            size = _watch(proc, command[0], own, start, timeout, limit, progress)
        except BaseException:
            _stop(proc)
            raise
        if proc.returncode == -signal.SIGINT:
            raise KeyboardInterrupt     # Ctrl-C reached the program first: the same thing
        recorded, references = _summary(own) if size else ("", False)
        if not references:
            raise LackeyError(f"valgrind wrote no trace for {command[0]} (pid {proc.pid}, "
                              f"program {recorded or '?'}, exit status {proc.returncode}): "
                              "is it a program valgrind can run?")
        os.replace(own, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)   # a partial trace is no trace of it
    return Recording(tuple(command), path, proc.returncode, size, time.monotonic() - start,
                     proc.pid, recorded)


def _summary(path):
    """(the command line valgrind's log names last, whether it holds a reference line)."""
    recorded = ""
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"==") and b"== Command: " in line:
                recorded = line.partition(b"== Command: ")[2].decode("utf-8", "replace").strip()
            elif line[:2] in (b"I ", b" L", b" S", b" M"):
                return recorded, True
    return recorded, False


def _watch(proc, name, path, start, timeout, limit, progress):
    """Wait for ``proc``, looking at the trace's size; return its final size."""
    while True:
        try:
            proc.wait(_POLL)
            exited = True
        except subprocess.TimeoutExpired:
            exited = False
        size = _size(path)
        elapsed = time.monotonic() - start
        if progress:
            progress(size, elapsed)
        if exited:
            return size
        if limit is not None and size > limit:
            raise TraceTooLarge(
                f"the trace of {os.path.basename(name)} passed {_megabytes(limit)} "
                f"after {elapsed:.0f} s: stopped and removed (lackey writes about 20 bytes "
                "per memory access; raise the limit to record more)")
        if timeout is not None and elapsed > timeout:
            raise LackeyError(f"{os.path.basename(name)} under lackey ran longer "
                              f"than {timeout} s: stopped")


def _megabytes(size):
    return f"{size / (1 << 20):.1f} MiB" if size < 10 << 20 else f"{size >> 20} MiB"


def _size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def _stop(proc):
    with contextlib.suppress(OSError):
        proc.kill()
    proc.wait()
