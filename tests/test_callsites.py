"""Call sites, the timeline and exec wrappers of the recorder (issue 15).

The program is tests/c/preload/callsites.c: build_big_table() holds the most bytes at
the peak, leak_some() leaks exactly LEAKED bytes, map_one() maps and unmaps a block.
"""
import os
import stat
import subprocess
import sys

import pytest

from helpers import ROOT, compile_programs
from pymalloc_real import preload
from pymalloc_real import trace as T

SOURCES = os.path.join(ROOT, "tests", "c", "preload")
BIN = os.path.join(ROOT, "tests", "c", "bin")
LEAKED = 3 * 1000 + 4000
BIG = 40 * 64 * 1024


@pytest.fixture(scope="module")
def program():
    try:
        preload.library_path()
    except FileNotFoundError as error:
        pytest.skip(f"library_path() raised FileNotFoundError: {error}")
    # -O2 with -g: the functions are noinline, the line numbers come from the debug info.
    return compile_programs(SOURCES, ["callsites"], BIN, "preload_", ["-O2", "-g", "-fno-builtin",
                            "-Wall", "-Wextra", "-Werror"], "the call-site program")["callsites"]


def _ours(sites, function):
    return [s for s in sites if any(f.function == function for f in s.frames[:2])]


@pytest.fixture(scope="module")
def every_stack(program):
    return T.record_run([program], stacks="all")


def test_the_top_site_by_peak_names_the_biggest_allocator(every_stack, program):
    recording = every_stack
    assert recording.report.exit_status == 0
    assert recording.pid == recording.report.pid and recording.command == [program]
    sites = recording.sites()
    top = sites[0]
    assert top.function == "build_big_table"
    assert top.peak_bytes == BIG and top.calls == 40 and top.bytes == BIG
    assert top.leaked_bytes == 0
    frame = top.frames[0]
    assert frame.library == program and frame.file.endswith("callsites.c") and frame.line
    assert [f.function for f in top.frames[:2]] == ["build_big_table", "main"]


def test_leaked_bytes_are_exact(every_stack):
    sites = every_stack.sites()
    leaking = _ours(sites, "leak_some")
    assert sum(s.leaked_bytes for s in leaking) == LEAKED
    assert sum(s.calls for s in leaking) == 4
    # Nothing else of ours leaks; the churn's 1000 calls are one site, all freed.
    churn = _ours(sites, "churn")
    assert len(churn) == 1 and churn[0].calls == 1000 and churn[0].leaked_bytes == 0
    # Every allocation has its stack: the sites' leaks are all the bytes live at exit.
    assert sum(s.leaked_bytes for s in sites) == _live_bytes_at_end(every_stack.trace)


def _live_bytes_at_end(trace):
    sizes = {}
    for op, oid, size, _, _ in trace:
        if op == T.FREE:
            sizes.pop(oid, None)
        else:
            sizes[oid] = size
    return sum(sizes.values())


def test_sampled_stacks_find_the_same_top_site(program):
    recording = T.record_run([program], sample="64K")     # stacks=sampled is the default
    assert recording.raw.sample_mean == 64 * 1024
    sites = recording.sites()
    assert sites[0].function == "build_big_table" and sites[0].sampled
    # An estimate: within a factor of two of the truth for 40 blocks at p = 0.63.
    assert BIG / 2 < sites[0].peak_bytes < BIG * 2
    # Far fewer stacks than operations.
    assert sum(1 for s in recording.raw.op_stacks if s) < len(recording.trace) / 10


def test_the_timeline_has_samples_and_events(every_stack):
    samples = every_stack.timeline
    events = [s.event for s in samples]
    assert {"brk", "mmap", "munmap"} <= set(events)
    assert all(a.t_ns <= b.t_ns for a, b in zip(samples, samples[1:]))
    mapped = next(s for s in samples if s.event == "mmap")
    assert mapped.mmapped >= 1 << 20 and mapped.live >= BIG + (1 << 20)
    last = samples[-1]          # taken at exit
    assert last.live == _live_bytes_at_end(every_stack.trace) and last.live >= LEAKED
    assert last.rss > 0 and last.minflt > 0 and last.heap > 0


def test_a_program_behind_an_exec_wrapper_is_recorded(program, tmp_path):
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\n# a launcher, as pyenv shims are\nexec "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    recording = T.record_run([str(wrapper), program], stacks="all")
    assert recording.command == [program], "the program the wrapper exec'd was recorded"
    assert recording.wrappers and recording.wrappers[0][-1] == program
    assert recording.sites()[0].function == "build_big_table"
    assert _ours(recording.sites(), "leak_some")


def test_an_empty_recording_is_an_error_with_the_reason(tmp_path):
    with pytest.raises(T.TraceError, match="recorded no allocation"):
        T.record_run(["true"])
    source = tmp_path / "static.c"
    source.write_text("int main(void) { return 0; }\n")
    binary = tmp_path / "static"
    if subprocess.run(["gcc", "-static", str(source), "-o", str(binary)]).returncode != 0:
        pytest.skip("no static libc to link with")
    with pytest.raises(T.TraceError, match="statically linked"):
        T.record_run([str(binary)])


def test_a_cpython_recording_takes_at_most_4_bytes_per_operation():
    # Allocating for at least 100 ms, however fast the machine, so that the 10 ms tick
    # shows below.
    script = ("import json, time\nstart = time.monotonic()\n"
              "while time.monotonic() - start < 0.1:\n"
              "    d = {str(i): [i] for i in range(20000)}; n = len(json.dumps(d))\nprint(n)")
    recording = T.record_run([sys.executable, "-c", script],
                             env=dict(os.environ, PYTHONMALLOC="malloc"))
    raw = recording.raw
    assert len(raw.trace) > 200_000 and raw.trace.problems() == []
    assert raw.bytes_per_op <= 4, f"{raw.bytes_per_op:.2f} bytes/op on disk"
    assert raw.finished and "python" in raw.maps
    # The 10 ms tick: samples no event took, each at least 10 ms after the one before
    # (the last one is the exit's).
    samples = recording.timeline
    ticks = [(a, b) for a, b in zip(samples, samples[1:-1]) if b.event is None]
    assert ticks and all(b.t_ns - a.t_ns >= 10_000_000 for a, b in ticks)


def test_a_recording_cut_short_keeps_its_whole_records(program, tmp_path):
    report = preload.run([program], options={"trace": str(tmp_path / "r.%p.raw"),
                                             "stacks": "all"})
    data = (tmp_path / f"r.{report.pid}.raw").read_bytes()
    whole = T.decode(data)
    assert whole.finished and whole.pid == report.pid and len(whole.trace) > 2000
    assert T.load(tmp_path / f"r.{report.pid}.raw") == whole.trace
    # As if the process was killed a quarter of the way in (the maps at exit and the
    # stack table can be most of a short run's file).
    cut = T.decode(data[:len(data) // 4])
    assert not cut.finished and cut.maps is None
    assert 0 < len(cut.trace) < len(whole.trace) and cut.trace.problems() == []
    assert cut.trace.packed() == whole.trace.packed()[:len(cut.trace.packed())]
    # After the header (32 bytes) and the command line's record (tag, kind, length):
    after = 32 + 3 + len(program) + 1
    assert data[after - len(program) - 1:after] == program.encode() + b"\0"
    with pytest.raises(T.TraceError, match="unknown extension record 31"):
        T.decode(data[:after] + bytes([0xf8]) + data[after:])
