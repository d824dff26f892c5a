"""Run a command on a chosen allocator and report what it cost (issue 4).

This module starts the command with the right environment (the allocator's library in
``LD_PRELOAD``, our options), reaps it with ``os.wait4`` for the resource usage of that
one child, and reads the statistics our library writes at exit. Which libraries there
are is libraries.py's business, the options' options.py's. Nothing here prints: the
command line does.

Peak RSS needs one precaution. At exec the kernel charges the peak RSS of the address
space being replaced to the new program (``ru_maxrss`` is the maximum over both).
subprocess starts children with vfork, so that address space is this interpreter's and
a child as small as ``true`` would report this process's peak, hundreds of MiB under
pytest. So, where it can, ``run`` starts the command from a small process instead: a
few lines of perl (part of every Debian system) fork the command and exit, and this
process, marked a child subreaper for that moment, inherits the command as its own
child and reaps it with ``os.wait4`` as usual. The command then starts from perl's
small address space (about 3 MiB at most, and only programs smaller than that can
notice). Without perl, the command is started directly and the report says when its
peak RSS may be this process's.
"""
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal as signals       # `signal` is a RunReport field
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .libraries import OURS, is_ours, resolve
from .options import OPTIONS_VARIABLE, OptionError, format_options, parse_options
from ..reprs import readable

_MiB = 1024 * 1024


# ---- the report ------------------------------------------------------------------------------

@readable
@dataclass
class RunReport:
    """What one run cost, from ``os.wait4``'s resource usage of that child.

    ``pid`` is the command's process id. ``exit_status`` is its exit code, None when a
    signal killed it (then ``signal`` is the number; ``timed_out`` says whether we sent
    it). Times are in seconds (wall time from the command's start to its reaping),
    ``max_rss`` in bytes. ``stdout``/``stderr`` are the captured output (None when not
    captured). ``stats`` is the JSON object our library wrote at exit for the command's
    process (None for other allocators, or when it wrote none: then ``notes`` says
    why), ``other_stats`` those of its descendants, by pid. ``launcher`` is "perl" when
    the command started from a small process, "direct" when it started from this one
    (see the module's docstring).
    """
    command: List[str]
    allocator: str
    library: Optional[str]
    pid: int
    exit_status: Optional[int]
    signal: Optional[int]
    wall_time: float
    user_time: float
    system_time: float
    max_rss: int
    minor_faults: int
    major_faults: int
    stdout: Optional[str] = None
    stderr: Optional[str] = None
    options: Dict[str, str] = field(default_factory=dict)
    stats: Optional[dict] = None
    other_stats: Dict[int, dict] = field(default_factory=dict)
    timed_out: bool = False
    launcher: str = "direct"
    notes: List[str] = field(default_factory=list)

    @property
    def cpu_time(self):
        """User plus system CPU time, in seconds."""
        return self.user_time + self.system_time

    @property
    def ok(self):
        """Whether the command exited with status 0."""
        return self.exit_status == 0

    @property
    def signal_name(self):
        """The name of the signal that killed the command (``SIGTERM``), or None."""
        if self.signal is None:
            return None
        try:
            return signals.Signals(self.signal).name
        except ValueError:
            return f"signal {self.signal}"

    @property
    def shell_status(self):
        """The exit code a shell would give: the status, or 128 + the signal number."""
        return self.exit_status if self.signal is None else 128 + self.signal

    def as_dict(self):
        """The report as plain data for JSON, derived fields included."""
        return dict(dataclasses.asdict(self), cpu_time=self.cpu_time,
                    signal_name=self.signal_name, shell_status=self.shell_status)


# ---- running ---------------------------------------------------------------------------------

def run(cmd, allocator=OURS, options=None, env=None, stats=True, timeout=None, input=None,
        capture=True):
    """Run ``cmd`` (a list of strings, or one string split like a shell would) with
    LD_PRELOAD set to ``allocator``'s library and return a RunReport.

    ``allocator`` is one of ALLOCATORS (glibc: no preload) or the path of a shared
    library. ``options`` (a dict or "key=value,...") go to our library in
    PYMALLOC_REAL_OPTIONS and are refused for any other allocator. ``env`` replaces
    os.environ for the command. With ``stats`` (ours only) the library writes its
    statistics at exit, each process of the run to its own temporary file, and the
    report carries them. ``timeout`` (seconds) kills the command with SIGKILL when it
    runs longer. ``input`` (str or bytes) is its standard input, else it inherits ours.
    ``capture`` keeps its stdout and stderr in the report instead of letting them
    through.

    Raises LibraryMissing/PeerMissing when the library is not installed,
    FileNotFoundError when the command is not found, OptionError for bad options.
    """
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(arg) for arg in cmd]
    if not argv:
        raise OptionError("no command to run")
    chosen = parse_options(options)
    if chosen and not is_ours(allocator):
        raise OptionError(f"options ({format_options(chosen)}) are for pymalloc_real's "
                          f"library only, not for {allocator}")
    target = resolve(allocator)
    base_env = dict(os.environ if env is None else env)
    executable = _find_command(argv[0], base_env)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-run-") as scratch:
        stats_path = None
        if target.ours and stats:
            # %p: the library puts each process's pid there, so a command's children
            # (a shell's, make's) do not overwrite the command's own report.
            stats_path = chosen.setdefault("stats", os.path.join(scratch, "stats.%p.json"))
        settings = _preload_settings(target, chosen)
        report = _measure(argv, executable, target, base_env, settings, timeout, input,
                          capture)
        report.options = chosen
        if stats_path:
            report.stats, report.other_stats, note = _read_stats(stats_path, report.pid)
            if note:
                report.notes.append(note)
    return report


def _find_command(name, env):
    """The file exec will run, searched in the command's own PATH, as execvpe does."""
    if os.sep in name:
        found = name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    else:
        found = shutil.which(name, path=env.get("PATH", os.defpath))
    if found is None:
        raise FileNotFoundError(f"command not found: {name}")
    return found


def _preload_settings(target, options):
    """The variables the command needs on top of its environment. The preload variables
    are always set or cleared, so a stray one in our environment does not leak in."""
    return {"LD_PRELOAD": target.library,
            OPTIONS_VARIABLE: format_options(options) if target.ours and options else None}


def _measure(argv, executable, target, env, settings, timeout, input, capture):
    with _Streams(capture, input) as streams:
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        child = _start(argv, executable, env, settings, streams)
        status, usage, timed_out, end = _reap(child.pid, timeout)
        stdout, stderr = streams.read()
    if child.popen is not None:
        # We reaped it ourselves; tell Popen so it never waits for a pid we freed.
        child.popen.returncode = os.waitstatus_to_exitcode(status)
    report = RunReport(
        command=list(argv), allocator=target.name, library=target.library, pid=child.pid,
        exit_status=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        wall_time=end - child.start, user_time=usage.ru_utime, system_time=usage.ru_stime,
        max_rss=usage.ru_maxrss * 1024, minor_faults=usage.ru_minflt,
        major_faults=usage.ru_majflt, stdout=stdout, stderr=stderr, timed_out=timed_out,
        launcher=child.launcher)
    if timed_out:
        report.notes.append(f"timed out after {timeout:g} s: killed with SIGKILL")
    if child.launcher == "direct" and report.max_rss <= own_peak:
        report.notes.append(
            f"peak RSS may be this process's, not the command's: it was started directly "
            f"from this process (peak {own_peak / _MiB:.1f} MiB), whose peak the kernel "
            "charges to it at exec (perl, which would start it from a small process, is "
            "not available)")
    return report


class _Streams:
    """The command's stdin/stdout/stderr as temporary files: nothing to drain while it
    runs, so no deadlock, and a grandchild holding them open cannot stall us."""

    def __init__(self, capture, input):
        self.capture, self.input = capture, input
        self.stdin = self.stdout = self.stderr = None

    def __enter__(self):
        if self.input is not None:
            data = self.input.encode() if isinstance(self.input, str) else bytes(self.input)
            self.stdin = tempfile.TemporaryFile()
            self.stdin.write(data)
            self.stdin.seek(0)
        if self.capture:
            self.stdout, self.stderr = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        return self

    def read(self):
        """The captured output as text (undecodable bytes replaced), or (None, None)."""
        if not self.capture:
            return None, None
        return tuple(_read_text(f) for f in (self.stdout, self.stderr))

    def __exit__(self, *exc):
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                f.close()


def _read_text(f):
    f.seek(0)
    return f.read().decode("utf-8", errors="replace")


@dataclass
class _Child:
    """A started command: its pid (our child), when it started, the Popen object when
    Popen started it directly, and how it was started."""
    pid: int
    start: float
    popen: Optional[subprocess.Popen]
    launcher: str


def _start(argv, executable, env, settings, streams):
    perl = _launcher()
    if perl:
        return _start_from_perl(perl, argv, executable, env, settings, streams)
    child_env = {k: v for k, v in env.items() if k not in settings}
    child_env.update({k: v for k, v in settings.items() if v is not None})
    start = time.monotonic()
    popen = subprocess.Popen(argv, executable=executable, env=child_env, stdin=streams.stdin,
                             stdout=streams.stdout, stderr=streams.stderr)
    return _Child(popen.pid, start, popen, "direct")


# The small process the command starts from: fork, give the child its preload
# variables (perl itself must not run on the allocator under test), exec, and tell
# Python the child's pid on the pipe whose descriptor is the first argument.
_LAUNCHER_SCRIPT = r"""
my $fd = shift @ARGV;
my $count = shift @ARGV;
my @settings = splice @ARGV, 0, $count;
my $file = shift @ARGV;
open(my $report, '>&=', $fd) or die "pymalloc-real launcher: fd $fd: $!\n";
my $pid = fork;
defined $pid or die "pymalloc-real launcher: fork: $!\n";
if ($pid == 0) {
    close $report;
    for my $setting (@settings) {
        my ($key, $value) = split /=/, $setting, 2;
        $ENV{$key} = $value;
    }
    exec { $file } @ARGV;
    print STDERR "pymalloc-real launcher: cannot run $file: $!\n";
    exit 127;
}
print $report "$pid\n";
close $report;
"""


def _start_from_perl(perl, argv, executable, env, settings, streams):
    launcher_env = {k: v for k, v in env.items() if k not in settings}
    assignments = [f"{k}={v}" for k, v in settings.items() if v is not None]
    read_end, write_end = os.pipe()
    try:
        with _subreaper():
            launcher = subprocess.Popen(
                [perl, "-e", _LAUNCHER_SCRIPT, str(write_end), str(len(assignments)),
                 *assignments, executable, *argv],
                env=launcher_env, stdin=streams.stdin, stdout=streams.stdout,
                stderr=streams.stderr, pass_fds=(write_end,))
            os.close(write_end)
            write_end = None
            line = _read_line(read_end)
            start = time.monotonic()
            # Once perl is gone the command is our child (we are its subreaper).
            launcher.wait()
    finally:
        os.close(read_end)
        if write_end is not None:
            os.close(write_end)
    if not line.strip().isdigit():
        raise OSError(f"could not start the command: the launcher (perl) exited with "
                      f"status {launcher.returncode} before reporting its pid")
    return _Child(int(line), start, None, "perl")


def _read_line(fd):
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 64)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii", errors="replace")


@functools.lru_cache(maxsize=None)
def _launcher():
    """perl's path when the command can start from it (perl present, Linux's child
    subreaper available), else None."""
    perl = shutil.which("perl")
    if perl is None or not sys.platform.startswith("linux"):
        return None
    try:
        _get_subreaper()
    except OSError:
        return None
    return perl


_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37
# One launch at a time: the subreaper mark is per process.
_SUBREAPER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option, value):
    if _libc().prctl(option, ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                     ctypes.c_ulong(0)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def _get_subreaper():
    flag = ctypes.c_int(0)
    _prctl(_PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag))
    return flag.value


@contextlib.contextmanager
def _subreaper():
    """Mark this process a child subreaper for the duration: an orphaned descendant
    (the command, when perl exits) becomes our child instead of init's."""
    with _SUBREAPER_LOCK:
        already = _get_subreaper()
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        try:
            yield
        finally:
            if not already:
                _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def _reap(pid, timeout):
    """Wait for our child ``pid`` with os.wait4; after ``timeout`` seconds kill it
    first. Returns (status, rusage, timed_out, end time). On an interruption (Ctrl-C)
    the child is killed and reaped before the exception goes on."""
    timed_out = False
    try:
        if timeout is not None and not _exits_within(pid, timeout):
            # Still our unreaped child, so the pid cannot belong to anybody else.
            os.kill(pid, signals.SIGKILL)
            timed_out = True
        _, status, usage = os.wait4(pid, 0)
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signals.SIGKILL)
            os.wait4(pid, 0)
        raise
    return status, usage, timed_out, time.monotonic()


def _exits_within(pid, timeout):
    """Whether the child exits within ``timeout`` seconds, without reaping it: a pidfd
    becomes readable at exit; without pidfds, poll with waitid(WNOWAIT)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return _poll_exit(pid, timeout)
    try:
        return bool(select.select([fd], [], [], max(timeout, 0))[0])
    finally:
        os.close(fd)


def _poll_exit(pid, timeout):
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _read_stats(path, pid):
    """The statistics our library wrote at exit: (the command's, {pid: a descendant's},
    None) or, when the command's process wrote none, (None, {...}, why not). A "%p" in
    ``path`` stands for a pid, as in the library."""
    if "%p" not in path:
        stats, note = _read_stats_file(path)
        return stats, {}, note
    stats, note = _read_stats_file(path.replace("%p", str(pid)))
    others = {}
    directory, name = os.path.split(path)
    pattern = re.compile(r"(\d+)".join(re.escape(part) for part in name.split("%p")))
    for entry in sorted(os.listdir(directory or ".")):
        match = pattern.fullmatch(entry)
        if match and len(set(match.groups())) == 1 and int(match.group(1)) != pid:
            other, _ = _read_stats_file(os.path.join(directory, entry))
            if other is not None:
                others[int(match.group(1))] = other
    if note and others:
        note += f"; {len(others)} other process(es) of the run wrote theirs (other_stats)"
    return stats, others, note


def _read_stats_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None, (f"no statistics: nothing was written to {path} (the library writes "
                      "them when the process exits normally)")
    except (OSError, ValueError) as error:
        return None, f"no statistics: {path} is not valid JSON ({error})"
    if not isinstance(data, dict):
        return None, f"no statistics: {path} holds a JSON {type(data).__name__}, not an object"
    return data, None
