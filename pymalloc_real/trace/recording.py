"""Recording programs: ``record`` runs a command under the preload library with
``trace=`` and returns its trace (``record_run`` keeps every process's); ``profile``
runs it with ``profile=`` and returns the size-class ``Profile`` the library wrote,
which ``presize=PATH`` reads back to presize the heap at start-up (seed 001's "working
set").
"""


import dataclasses
import os
import re
import shutil
import stat
import struct
import tempfile
from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .. import preload
from .model import Trace, TraceError
from .rawstream import RAW2_MAGIC, RawRecording, decode
from .sites import call_sites, timeline


# ---- recording programs ---------------------------------------------------------------------

@dataclass
class Recording:
    """One run recorded. ``trace`` is the recorded process's trace: the command's own
    process, and when it exec'd another program (a wrapper script, a pyenv shim) the
    last program it exec'd that allocated; ``pid`` and ``command`` say which (the
    command line that program ran), ``wrappers`` the command lines of the programs it
    was before. ``others`` are the traces of the processes it started (by pid: a shell's
    commands, gcc's cc1 and as), ``report`` the run's RunReport. ``raw`` is the recorded
    process's decoded recording (stacks, samples, maps), behind :meth:`sites` and
    :attr:`timeline`."""
    trace: Optional[Trace]
    others: Dict[int, Trace]
    report: object
    raw: Optional[RawRecording] = None
    wrappers: List[List[str]] = field(default_factory=list)
    _sites: Optional[list] = field(default=None, repr=False)
    _timeline: Optional[list] = field(default=None, repr=False)

    @property
    def pid(self):
        """The recorded process's id."""
        return self.raw.pid if self.raw is not None else self.report.pid

    @property
    def command(self):
        """The command line of the program recorded (after any exec), as a list."""
        return list(self.raw.command) if self.raw is not None else list(self.report.command)

    def sites(self):
        """The call sites (:class:`~pymalloc_real.trace.sites.CallSite`), largest peak
        bytes first; raises TraceError when the recording has no stacks."""
        if self._sites is None:
            self._sites = call_sites(self._require_raw())
        return self._sites

    @property
    def timeline(self):
        """The :class:`~pymalloc_real.trace.sites.Sample` series of the run."""
        if self._timeline is None:
            self._timeline = timeline(self._require_raw())
        return self._timeline

    def _require_raw(self):
        if self.raw is None:
            raise TraceError(f"pid {self.report.pid} left no recording")
        return self.raw

    def largest(self):
        """The trace with the most operations among all processes (gcc's is cc1's)."""
        candidates = [t for t in [self.trace, *self.others.values()] if t is not None]
        if not candidates:
            raise TraceError("the run recorded no trace")
        return max(candidates, key=len)


_TRACE_FILE = re.compile(r"trace\.(\d+)(?:\.(\d+))?\.raw")


def record_run(cmd, options=None, env=None, timeout=None, input=None, capture=True,
               stacks=None, sample=None, allow_empty=False):
    """Run ``cmd`` under the preload library with ``trace=`` (one file per process and
    program) and return a :class:`Recording`. ``stacks`` is "sampled" (the library's
    default: a stack per ``sample`` bytes allocated on average, 512 KiB unless given),
    "all" or "off"; ``options`` are more of the library's options; the others are
    ``preload.run``'s. Raises TraceError, saying why, when no process of the run
    recorded a single operation (``allow_empty`` returns the empty Recording instead)."""
    chosen = preload.parse_options(options)
    if stacks is not None:
        chosen["stacks"] = stacks
    if sample is not None:
        chosen["sample"] = str(sample)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-trace-") as scratch:
        chosen["trace"] = os.path.join(scratch, "trace.%p.raw")
        report = preload.run(cmd, options=chosen, env=env, timeout=timeout, input=input,
                             capture=capture)
        chains = {}             # pid -> {generation: RawRecording}
        for name in os.listdir(scratch):
            match = _TRACE_FILE.fullmatch(name)
            if match:
                with open(os.path.join(scratch, name), "rb") as f:
                    raw = _decode(f.read(), _command_text(cmd))
                chains.setdefault(int(match.group(1)), {})[int(match.group(2) or 0)] = raw
    generations = chains.pop(report.pid, {})
    own_chain = [generations[g] for g in sorted(generations)]
    recorded = [raw for raw in own_chain if len(raw.trace)]
    own = recorded[-1] if recorded else (own_chain[-1] if own_chain else None)
    others = {}
    for pid, chain in sorted(chains.items()):
        last = [chain[g] for g in sorted(chain) if len(chain[g].trace)] or \
            [chain[g] for g in sorted(chain)]
        others[pid] = last[-1].trace
    wrappers = [raw.command for raw in own_chain[:own_chain.index(own)]] if own else []
    recording = Recording(own.trace if own is not None else None, others, report, own, wrappers)
    if not allow_empty and not any(len(t) for t in [recording.trace, *others.values()]
                                   if t is not None):
        raise TraceError(why_empty(cmd, report, own_chain))
    return recording


def _decode(data, description):
    """A RawRecording from either raw form (the 24-byte records have no stacks)."""
    if data.startswith(RAW2_MAGIC):
        return decode(data, description)
    trace = Trace.from_raw(data, description=description)
    return RawRecording(0, trace, array("I", bytes(4 * len(trace))), {}, [], [], None, 0, 0, 0,
                        False, len(data))


def why_empty(cmd, report, chain=()):
    """Why a run recorded no operation, in one sentence for the user."""
    what = f"{_command_text(cmd)!r} (pid {report.pid}, exit status {report.exit_status})"
    if chain:
        programs = " -> ".join(" ".join(raw.command[:2]) or "?" for raw in chain)
        return (f"{what} recorded no allocation: its process ran {programs} and none of "
                "them called malloc & co through the library (a program with its own "
                "allocator, or one that exited before allocating)")
    executable = shutil.which(report.command[0]) if report.command else None
    reason = "the library was not loaded into it"
    if executable and _is_static(executable):
        reason = f"{executable} is statically linked, so LD_PRELOAD cannot reach it"
    elif executable and os.stat(executable).st_mode & (stat.S_ISUID | stat.S_ISGID):
        reason = f"{executable} is setuid/setgid: the loader ignores LD_PRELOAD for it"
    else:
        reason += (" (a wrapper that clears the environment or LD_PRELOAD, or a program "
                   "that never started)")
    notes = "; ".join(report.notes)
    return f"{what} recorded nothing: {reason}" + (f"; {notes}" if notes else "")


def _is_static(path):
    """Whether an ELF executable has no program interpreter (statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return not any(struct.unpack_from("<I", table, i * phentsize)[0] == 3   # PT_INTERP
                   for i in range(phnum))


def record(cmd, path=None, text=False, **kwargs):
    """The trace of ``cmd`` (a list or a string) run under the preload library: the
    recorded process's (the command's, or the program a wrapper exec'd; ``record_run``
    has the others). With ``path``, also saved there (binary, or text with ``text``).
    Raises TraceError, with the reason, when that process recorded no operation."""
    recording = record_run(cmd, allow_empty=True, **kwargs)
    if recording.trace is None or not len(recording.trace):
        raise TraceError(why_empty(cmd, recording.report,
                                   [recording.raw] if recording.raw is not None else []))
    if path is not None:
        recording.trace.save(path, text=text)
    return recording.trace


def _command_text(cmd):
    return cmd if isinstance(cmd, str) else " ".join(str(a) for a in cmd)


# ---- profiles and presizing (seed 001's working set) ------------------------------------------

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
