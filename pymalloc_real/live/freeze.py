"""Holding a busy process still for the length of one copy.

When a program takes its arena locks so often that no copy fits between two of them
(snapshot.py tries that first), the live view stops every thread with
PTRACE_SEIZE + PTRACE_INTERRUPT, copies, and detaches, which resumes them. Unlike
SIGSTOP this is invisible to the program's parent (a shell would take back its
terminal from a stopped foreground job), and a signal that arrives meanwhile is handed
back on detach. It needs the same permission as process_vm_readv (PTRACE_MODE_ATTACH).
"""
import ctypes
import errno as errno_codes
import os

from .remote import LiveViewError, libc as _libc, no_permission

__all__ = ["Frozen"]

PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_EVENT_STOP = 128
WALL = 0x40000000

_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


def _ptrace(request, tid, data=0):
    if _libc.ptrace(request, tid, None, ctypes.c_void_p(data)) == 0:
        return 0
    return ctypes.get_errno()


def _threads(pid):
    try:
        return {int(tid) for tid in os.listdir(f"/proc/{pid}/task")}
    except FileNotFoundError:
        raise LiveViewError(f"process {pid} ended") from None


def _tracer(pid):
    """The pid of whoever traces the process (gdb, strace), or 0."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Frozen:
    """``with Frozen(pid):`` every thread of the process is stopped inside the block."""

    def __init__(self, pid):
        self.pid = pid
        self.stopped = {}               # tid -> signal to hand back on detach (0: none)

    def __enter__(self):
        try:
            # Threads started while we stop the others are caught by the next round.
            while True:
                new = sorted(_threads(self.pid) - set(self.stopped))
                if not new:
                    return self
                # Interrupt them all, then wait for each: one scheduling delay, not one
                # per thread.
                interrupted = [tid for tid in new if self._interrupt(tid)]
                for tid in interrupted:
                    self._wait(tid)
        except BaseException:
            self.__exit__()
            raise

    def _interrupt(self, tid):
        error = _ptrace(PTRACE_SEIZE, tid)
        if error == errno_codes.ESRCH:
            self.stopped[tid] = None    # it exited meanwhile
            return False
        if error == errno_codes.EPERM:
            tracer = _tracer(self.pid)
            if tracer:
                raise LiveViewError(
                    f"process {self.pid} is too busy for a copy while it runs, and cannot be "
                    f"held still for one: process {tracer} is tracing it (a debugger?)")
            raise no_permission(self.pid)
        if error:
            raise LiveViewError(f"ptrace(PTRACE_SEIZE) of process {self.pid}: {os.strerror(error)}")
        self.stopped[tid] = 0
        return _ptrace(PTRACE_INTERRUPT, tid) == 0

    def _wait(self, tid):
        while True:
            try:
                _, status = os.waitpid(tid, WALL)
            except ChildProcessError:   # exited before it stopped
                self.stopped[tid] = None
                return
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.stopped[tid] = None
                return
            if os.WIFSTOPPED(status):
                if status >> 16 != PTRACE_EVENT_STOP:
                    # A signal-delivery stop: keep the signal for detach. The thread is
                    # stopped either way.
                    self.stopped[tid] = os.WSTOPSIG(status)
                return

    def __exit__(self, *exc):
        for tid, signal in self.stopped.items():
            if signal is not None:
                _ptrace(PTRACE_DETACH, tid, signal)
        self.stopped = {}
