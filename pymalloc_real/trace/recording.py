"""Recording programs: ``record`` runs a command under the preload library with
``trace=`` and returns its trace (``record_run`` keeps every process's); ``profile``
runs it with ``profile=`` and returns the size-class ``Profile`` the library wrote,
which ``presize=PATH`` reads back to presize the heap at start-up (seed 001's "working
set").
"""


import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Optional

from .. import preload
from .model import Trace, TraceError
from ..reprs import readable


# ---- recording programs ---------------------------------------------------------------------

@readable
@dataclass
class Recording:
    """One run recorded: the command's own trace, the traces of the processes it started
    (by pid: a shell's commands, gcc's cc1 and as), and the run's RunReport."""
    trace: Optional[Trace]
    others: Dict[int, Trace]
    report: object

    def largest(self):
        """The trace with the most operations among all processes (gcc's is cc1's)."""
        candidates = [t for t in [self.trace, *self.others.values()] if t is not None]
        if not candidates:
            raise TraceError("the run recorded no trace")
        return max(candidates, key=len)


def record_run(cmd, options=None, env=None, timeout=None, input=None, capture=True):
    """Run ``cmd`` under the preload library with ``trace=`` (one file per process) and
    return a :class:`Recording`. ``options`` are more of the library's options; the
    others are ``preload.run``'s."""
    chosen = preload.parse_options(options)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-trace-") as scratch:
        chosen["trace"] = os.path.join(scratch, "trace.%p.raw")
        report = preload.run(cmd, options=chosen, env=env, timeout=timeout, input=input,
                             capture=capture)
        traces = {}
        for name in sorted(os.listdir(scratch)):
            if name.startswith("trace.") and name.endswith(".raw"):
                pid = int(name.split(".")[1])
                with open(os.path.join(scratch, name), "rb") as f:
                    traces[pid] = Trace.from_raw(f.read(), description=_command_text(cmd))
    own = traces.pop(report.pid, None)
    return Recording(own, traces, report)


def record(cmd, path=None, text=False, **kwargs):
    """The trace of ``cmd`` (a list or a string) run under the preload library: the
    command's own process (``record_run`` has the others). With ``path``, also saved
    there (binary, or text with ``text``). Raises TraceError when the command's
    process wrote no trace (it exec'd nothing under the library, or ended with _exit)."""
    recording = record_run(cmd, **kwargs)
    if recording.trace is None:
        raise TraceError(f"no trace from {_command_text(cmd)!r} (pid {recording.report.pid}): "
                         f"exit status {recording.report.exit_status}; "
                         + "; ".join(recording.report.notes))
    if path is not None:
        recording.trace.save(path, text=text)
    return recording.trace


def _command_text(cmd):
    return cmd if isinstance(cmd, str) else " ".join(str(a) for a in cmd)


# ---- profiles and presizing (seed 001's working set) ------------------------------------------

@readable
@dataclass
class Profile:
    """The size-class profile the preload library writes at exit with ``profile=PATH``:
    the live heap at its peak ("steady state": the snapshot taken whenever live bytes
    grew by more than 1/32 since the last one). ``classes`` maps a class's largest chunk
    size to its live chunks then; ``heap_peak`` is the main heap's peak size (bytes from
    the OS), which ``presize=PATH`` grows the heap to at start-up; ``presized`` what a
    presized run grew it to (0 without presize)."""
    pid: int = 0
    heap_peak: int = 0
    mmapped_peak: int = 0
    peak_live: int = 0
    presized: int = 0
    classes: Dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text):
        profile = cls()
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            try:
                if fields[0] == "class" and len(fields) == 3:
                    profile.classes[int(fields[1])] = int(fields[2])
                elif len(fields) == 2 and fields[0] in {f.name for f in dataclasses.fields(cls)}:
                    setattr(profile, fields[0], int(fields[1]))
                else:
                    raise ValueError(line)
            except ValueError:
                raise TraceError(f"bad profile line {line!r}", number) from None
        return profile

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls.from_text(f.read())

    def to_text(self):
        lines = ["# pymalloc_real profile 1"]
        lines += [f"{name} {getattr(self, name)}" for name in
                  ("pid", "heap_peak", "mmapped_peak", "peak_live", "presized")]
        lines += [f"class {limit} {count}" for limit, count in sorted(self.classes.items())]
        return "\n".join(lines) + "\n"

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_text())


def profile(cmd, path=None, options=None, **kwargs):
    """Run ``cmd`` under the preload library with ``profile=`` and return the command's
    :class:`Profile` (saved to ``path`` too when given, ready for ``presize=path``).
    Returns (profile, RunReport)."""
    chosen = preload.parse_options(options)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-profile-") as scratch:
        chosen["profile"] = os.path.join(scratch, "profile.%p")
        report = preload.run(cmd, options=chosen, **kwargs)
        target = chosen["profile"].replace("%p", str(report.pid))
        if not os.path.exists(target):
            raise TraceError(f"{_command_text(cmd)!r} wrote no profile (exit status "
                             f"{report.exit_status})")
        result = Profile.load(target)
    if path is not None:
        result.save(path)
    return result, report
