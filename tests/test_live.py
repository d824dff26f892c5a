"""The live view (issue 15, done-when 3 and 4): `pymalloc-real top PID`, `heap PID` and
`pymalloc_real.live.attach(pid)` read a running program's allocator from outside, agree
with the program's own exit report and with its in-process introspection, stay
consistent while other threads allocate, never fault a page into the program, and fail
with one clear line on a process without the library or one we may not read. Named
mappings: where the kernel names anonymous mappings the library's show in
/proc/PID/maps; where it refuses, a test shows the refusal (EINVAL) and that the library
asked once and went on.
"""
import errno
import base64
import json
import pickle
import os
import re
import signal
import subprocess
import sys

import pytest

from helpers import ROOT, compile_programs
from pymalloc_real import live, preload
from pymalloc_real.live import naming

SOURCES = os.path.join(ROOT, "tests", "c", "preload")
BIN = os.path.join(ROOT, "tests", "c", "bin")
CLI = [sys.executable, "-m", "pymalloc_real"]

# live_pattern.c's pattern
SMALL_COUNT, SMALL_CHUNK = 64, 112          # malloc(100): 100 + 8 rounded up to 16
MEDIUM_COUNT, MEDIUM_CHUNK = 16, 40016      # malloc(40000)
MAPPED_COUNT, MAPPED_BYTES = 2, 512 * 1024
TCACHE_COUNT = 7


@pytest.fixture(scope="module")
def pattern_binary():
    return compile_programs(SOURCES, ["live_pattern", "live_churn"], BIN, "preload_",
                            ["-O1", "-Wall", "-Wextra", "-Werror", "-pthread"],
                            "the live-view test programs")


class Running:
    """A test program on the library, stopped at its "ready" line until finish()."""

    def __init__(self, argv, tmp_path, options=""):
        self.stats_path = tmp_path / "stats.json"
        env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYMALLOC_REAL_OPTIONS")}
        env["LD_PRELOAD"] = preload.library_path()
        env["PYMALLOC_REAL_OPTIONS"] = f"stats={self.stats_path}" + (f",{options}" if options else "")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("ready"), f"the program did not start: {line!r} " \
                                         f"{self.proc.stderr.read().decode()}"
        self.addresses = [int(word, 16) for word in line.split()[1:]]
        self.pid = self.proc.pid

    def finish(self):
        """End the program; its exit report (dict) and its stderr."""
        self.proc.stdin.write(b"\n")
        self.proc.stdin.close()
        stderr = self.proc.stderr.read().decode()
        assert self.proc.wait(timeout=30) == 0, stderr
        with open(self.stats_path, encoding="utf-8") as f:
            return json.load(f), stderr

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def running(pattern_binary, tmp_path):
    # tcache_grow=0: the cache keeps glibc's 7 chunks a size, which the pattern's bins
    # below count on (a growing bin would take more of the 32 small frees).
    program = Running([pattern_binary["live_pattern"]], tmp_path, options="tcache_grow=0")
    yield program
    program.kill()


def _cli(*args, timeout=60):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# ---- agreement with the program's own exit report --------------------------------------------

def test_snapshot_agrees_with_exit_report(running):
    with live.attach(running.pid) as process:
        assert process.directory.preload
        view = process.snapshot()
        stats, report, requests = view.stats(), view.report, view.requests_by_size()
    exit_report, stderr = running.finish()
    assert stderr == ""
    assert stats.in_use_bytes == exit_report["in_use_at_exit"]
    assert stats.arena == exit_report["heap_bytes"]
    assert stats.hblkhd == exit_report["mmapped_bytes"]
    assert stats.max_arena + stats.max_hblkhd == exit_report["peak_from_os"]
    for field in ("brk_moves", "mmap_calls", "munmap_calls", "mremap_calls", "trims",
                  "segments", "arenas", "tcache_count", "mmap_threshold", "trim_threshold"):
        assert getattr(stats, field) == exit_report[field], field
    assert report["calls"] == exit_report["calls"]
    assert requests == exit_report["size_classes"]
    assert report["bytes_requested"] == exit_report["bytes_requested"]
    assert report["peak_live_bytes"] == exit_report["peak_in_use"]
    assert report["calls"]["malloc"] == SMALL_COUNT + MEDIUM_COUNT + MAPPED_COUNT
    assert report["calls"]["free"] == SMALL_COUNT // 2 + MEDIUM_COUNT // 2


def test_chunks_bins_and_ledger_show_the_pattern(running):
    small, medium, mapped = running.addresses
    view = live.attach(running.pid).snapshot()
    chunks = {c.mem: c for c in view.chunks()}
    assert chunks[small].size == SMALL_CHUNK and chunks[small].in_use
    assert chunks[medium].size == MEDIUM_CHUNK and chunks[medium].in_use
    assert chunks[mapped].kind == "mmapped" and chunks[mapped].mmapped
    assert chunks[mapped].mapping_end - chunks[mapped].mapping_start >= MAPPED_BYTES
    mmapped = [c for c in view.chunks() if c.kind == "mmapped"]
    assert len(mmapped) == MAPPED_COUNT
    bins = view.bins()
    # 32 small frees: the thread cache keeps 7, the fast bin of 112-byte chunks the rest.
    assert [e.size for e in bins.fast[SMALL_CHUNK // 16 - 2]] == [SMALL_CHUNK] * (32 - TCACHE_COUNT)
    freed_medium = [e for e in bins.entries() if e.kind != "fast" and e.size == MEDIUM_CHUNK]
    assert len(freed_medium) == MEDIUM_COUNT // 2
    for entry in bins.entries():
        assert chunks[entry.address + 16].bin == entry.kind and not chunks[entry.address + 16].in_use
    ledger, stats = view.ledger(), view.stats()
    assert ledger.in_use_bytes + ledger.mmapped_in_use_bytes == stats.in_use_bytes
    assert ledger.free_fast_bytes == (32 - TCACHE_COUNT) * SMALL_CHUNK == stats.fsmblks
    assert ledger.mmapped_chunks == MAPPED_COUNT and ledger.mmapped_bytes == stats.hblkhd
    assert ledger.heap_bytes == stats.arena
    # Everything the program wrote is resident; top beyond its first page never was touched.
    assert ledger.in_use_resident == ledger.in_use_bytes
    assert ledger.top_resident < ledger.top_bytes
    assert [c.limit for c in view.size_classes()][-1] == 0     # the mmapped class comes last


def test_top_and_heap_commands(running):
    once = _cli("top", running.pid, "--once")
    assert once.returncode == 0, once.stderr
    with live.attach(running.pid) as process:
        stats = process.stats()
    assert f"in use    {stats.in_use_bytes:>14,} bytes" in once.stdout
    assert f"malloc {SMALL_COUNT + MEDIUM_COUNT + MAPPED_COUNT}" in once.stdout
    assert "mmapped" in once.stdout and "arena" in once.stdout

    samples = _cli("top", running.pid, "--count", 2, "--interval", 0.05, "--json")
    assert samples.returncode == 0, samples.stderr
    lines = [json.loads(line) for line in samples.stdout.splitlines()]
    assert len(lines) == 2 and lines[1]["time"] > lines[0]["time"]
    assert {line["stats"]["in_use_bytes"] for line in lines} == {stats.in_use_bytes}

    heap = _cli("heap", running.pid)
    assert heap.returncode == 0, heap.stderr
    small, medium, mapped = running.addresses
    assert f"{mapped - 16:#x}" in heap.stdout                  # the mmapped chunk's line
    assert re.search(rf"fast\[5\] {SMALL_CHUNK}\s+{32 - TCACHE_COUNT} chunks", heap.stdout)
    assert "ledger" in heap.stdout and "top" in heap.stdout
    every = _cli("heap", running.pid, "--all", "--json")
    document = json.loads(every.stdout)
    assert document["stats"]["in_use_bytes"] == stats.in_use_bytes
    assert sum(c["size"] for c in document["chunks"] if c["in_use"] and c["kind"] == "chunk") == \
        document["ledger"]["in_use_bytes"]
    exit_report, _ = running.finish()
    assert exit_report["in_use_at_exit"] == stats.in_use_bytes


def test_maps_of_a_process_on_the_library_shows_our_bytes(running):
    result = _cli("maps", running.pid, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    view = live.attach(running.pid).snapshot()
    ours = sum(s.size for s in view.segments()) + \
        sum(c.mapping_end - c.mapping_start for c in view.chunks() if c.kind == "mmapped")
    assert document["totals"]["ours"] == ours > MAPPED_COUNT * MAPPED_BYTES
    heap_lines = [r for r in document["regions"] if r["path"] == "[heap]"]
    assert any("heap segment" in note for r in heap_lines for note in r["notes"])


def test_reading_faults_nothing_into_the_program(running):
    """Pages of top the program never touched stay absent after every view of it."""
    view = live.attach(running.pid).snapshot()
    (segment,) = view.segments()
    memory = live.RemoteMemory(running.pid)
    before = memory.present_pages(segment.start, segment.end)
    assert not all(before)                      # top's untouched pages
    assert _cli("heap", running.pid).returncode == 0
    live.attach(running.pid).snapshot().ledger()
    assert memory.present_pages(segment.start, segment.end) == before
    memory.close()


# ---- the same views as in-process introspection -------------------------------------------------

CHILD = r"""
import base64, pickle, sys, threading, pymalloc_real as prm
blocks = [prm.malloc(n) for n in (100, 3000, 40000, 300000, 50, 70, 130000)]
blocks[1].free(); blocks[4].free(); blocks[6].free()
allocated, done = threading.Event(), threading.Event()
def other():                # stays alive (attached to its arena) until the end
    blocks.append(prm.malloc(9000)); allocated.set(); done.wait()
thread = threading.Thread(target=other); thread.start(); allocated.wait()
ledger = prm.ledger()       # first: it counts mincore calls, which stats() reports
views = (prm.chunks(), prm.bins(), prm.arenas(), prm.segments(), ledger, prm.stats())
print(base64.b64encode(pickle.dumps(views)).decode(), flush=True)   # reprs are for people
sys.stdin.readline(); done.set(); thread.join()
"""


def test_attach_matches_in_process_introspection():
    """A Python process using the extension, looked at from here: every dataclass equal to
    what it computed itself (arenas of two threads, bins, mmapped chunks, the ledger's
    residency from pagemap against its mincore)."""
    import pymalloc_real.introspect as introspect
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        expected = pickle.loads(base64.b64decode(child.stdout.readline()))
        with live.attach(child.pid) as process:
            assert not process.directory.preload
            view = process.snapshot()
            got = (view.chunks(), view.bins(), view.arenas(), view.segments(), view.ledger(),
                   view.stats())
        assert len(got[2]) >= 2                 # the thread's arena
        for name, mine, theirs in zip(("chunks", "bins", "arenas", "segments", "ledger", "stats"),
                                      got, expected):
            assert mine == theirs, name
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_snapshots_stay_consistent_while_threads_allocate(pattern_binary, tmp_path):
    """Four threads churn; every snapshot walks cleanly and each arena's accounting equals
    the in-use chunks its walk finds (a torn copy would break one or the other)."""
    program = Running([pattern_binary["live_churn"], "4"], tmp_path)
    try:
        with live.attach(program.pid) as process:
            copies = 0
            for _ in range(8):
                view = process.snapshot()
                chunks = view.chunks()
                for arena in view.arenas():
                    walked = sum(c.size for c in chunks if c.arena == arena.index and c.in_use)
                    assert arena.in_use_bytes == walked, arena
                copies += sum(a.copies for a in view.raw.arenas)
        _, stderr = program.finish()
        assert stderr == ""
    finally:
        program.kill()


# ---- clear errors ---------------------------------------------------------------------------

def test_process_without_the_library_is_a_clear_error():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        for command in ("top", "heap"):
            result = _cli(command, sleeper.pid, "--json")
            assert result.returncode == 2
            assert result.stderr.count("\n") == 1
            assert f"process {sleeper.pid} (sleep) does not use pymalloc_real" in result.stderr
        with pytest.raises(live.LiveViewError, match="does not use pymalloc_real"):
            live.attach(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    gone = _cli("top", sleeper.pid, "--once")
    assert gone.returncode == 2 and gone.stderr == f"pymalloc-real top: error: no process {sleeper.pid}\n"


def test_process_we_may_not_read_is_a_clear_error(running):
    """As another user (nobody), the program (root's) cannot be read: the error says why."""
    if os.geteuid() != 0:
        target = 1                              # init: not ours to read
    else:
        target = running.pid
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:                                # the child reads as nobody
        os.close(reader)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            live.attach(target)
            message = "attached"
        except live.LiveViewError as error:
            message = str(error)
        except BaseException as error:         # anything else is a failure to report
            message = f"{type(error).__name__}: {error}"
        os.write(writer, message.encode())
        os._exit(0)
    os.close(writer)
    message = os.read(reader, 4096).decode()
    os.close(reader)
    os.waitpid(pid, 0)
    assert message.startswith(f"no permission to read process {target}: "), message
    assert "CAP_SYS_PTRACE" in message


def test_ctrl_c_ends_top_quietly_with_130(running):
    top = subprocess.Popen([*CLI, "top", str(running.pid), "--interval", "0.05"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert "pymalloc-real top" in top.stdout.readline()
    top.send_signal(signal.SIGINT)
    assert top.wait(timeout=30) == 130
    assert top.stderr.read() == ""


# ---- named mappings ----------------------------------------------------------------------------

def test_named_mappings_or_why_the_kernel_refuses(running):
    """Where prctl(PR_SET_VMA_ANON_NAME) works, every mmapped chunk is
    "[anon:pymalloc_real mmapped]" in /proc/PID/maps. Where it does not, the kernel says
    EINVAL, the library asked exactly once (then stopped) and said nothing."""
    view = live.attach(running.pid).snapshot()
    counters = view.raw.os_counters
    mapped = [c for c in view.chunks() if c.kind == "mmapped"]
    named = naming.named_regions(running.pid)
    maps_text = open(f"/proc/{running.pid}/maps", encoding="utf-8").read()
    assert re.search(r" \[heap\]$", maps_text, re.M)      # brk memory keeps the kernel's name
    refusal = naming.probe_naming()
    if refusal == 0:
        assert counters["mappings_named"] >= MAPPED_COUNT and counters["naming_refused"] == 0
        for chunk in mapped:            # neighbours with one name may share a region
            assert any(start <= chunk.mapping_start and chunk.mapping_end <= end and
                       name == "[anon:pymalloc_real mmapped]" for start, end, name in named)
        listing = _cli("maps", running.pid)
        assert "[anon:pymalloc_real mmapped]" in listing.stdout
    else:
        assert refusal == errno.EINVAL
        assert naming.kernel_config() in ("not set", None) or \
            tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) < (5, 17)
        assert counters["naming_refused"] == 1 and counters["mappings_named"] == 0
        assert named == []
    _, stderr = running.finish()
    assert stderr == ""


def test_python_on_the_library_importing_the_extension_has_two_directories(tmp_path):
    """Both builds in one process (CPython on the LD_PRELOAD library, importing
    pymalloc_real): each directory points at its own allocator's counters, and attach
    reads the library's, the one serving the process's malloc."""
    from pymalloc_real.live.directory import SYMBOL, _read_directory
    from pymalloc_real.live.remote import find_symbol
    code = ("import sys, pymalloc_real as prm\nb = prm.malloc(300000)\nx = bytearray(600000)\n"
            "print('ready', flush=True)\nsys.stdin.readline()")
    program = Running([sys.executable, "-c", code], tmp_path)
    try:
        found = find_symbol(program.pid, SYMBOL)
        assert len(found) == 2 and "_preload" in found[0][0]
        with live.attach(program.pid) as process:
            directories = [_read_directory(process.memory, path, address) for path, address in found]
            assert process.library == found[0][0] and process.directory.preload
            stats = process.stats()
        for directory in directories:       # counters live in the same object as the directory
            assert abs(directory.os_counters - directory.address) < 1 << 24
        assert directories[0].os_counters != directories[1].os_counters
        assert stats.hblkhd >= 600000       # the bytearray: the process's own malloc
        program.finish()
    finally:
        program.kill()
