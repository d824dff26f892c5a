"""Allocation traces (issue 7): the Trace type and its three forms, the generators and
the seeds' examples, recording programs through the preload library (trace=), the
profile it writes (profile=) and presizing from it (presize=).

The recorded program with a known sequence is tests/c/preload/trace_known.c; its
expected trace is EXPECTED below. libc's own calls during the run (thread creation
allocates the new thread's DTV) are told apart by their sizes, which the program chose
to be unusual.
"""
import json
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from helpers import ROOT
from pymalloc_real import cli, preload, trace as T
from pymalloc_real.trace import CALLOC, FREE, MALLOC, MEMALIGN, REALLOC, Trace, TraceError

SOURCES = os.path.join(ROOT, "tests", "c", "preload")
BIN = os.path.join(ROOT, "tests", "c", "bin")

EXPECTED = """
m 0 100
c 1 300
r 0 5000
a 2 200 64
a 3 10 4096
a 4 512 256
a 5 33 4096
f 1
m 6 77
f 6
m 7 1234 t1
f 7 t1
m 8 200000
f 8
m 9 42
f 0
f 2
f 3
f 4
f 5
f 9
""" + "".join(f"m {10 + i} 24\nf {10 + i}\n" for i in range(100))


@pytest.fixture(scope="module")
def library():
    try:
        return preload.library_path()
    except FileNotFoundError as error:
        pytest.skip(f"library_path() raised FileNotFoundError: {error}")


@pytest.fixture(scope="module")
def known_program(library):
    os.makedirs(BIN, exist_ok=True)
    binary = os.path.join(BIN, "preload_trace_known")
    # -fno-builtin: gcc would otherwise remove the malloc/free pairs it can see through.
    subprocess.run(["gcc", "-O2", "-fno-builtin", "-Wall", "-Wextra", "-Werror", "-pthread",
                    os.path.join(SOURCES, "trace_known.c"), "-o", binary], check=True)
    return binary


def _only_sizes(trace, sizes):
    """The trace restricted to objects created with one of ``sizes``, ids renumbered
    densely in order of creation."""
    keep, ops = {}, []
    for op, oid, size, align, thread in trace:
        if op in T.CREATING:
            if size not in sizes:
                continue
            keep[oid] = len(keep)
        if oid in keep:
            ops.append((op, keep[oid], size, align, thread))
    return Trace.from_ops(ops)


# ---- the forms --------------------------------------------------------------------------

op_tuples = st.tuples(st.integers(1, 5), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                      st.integers(0, 63), st.integers(0, 0xffff))
small_ops = st.tuples(st.integers(1, 5), st.integers(0, 40), st.integers(0, 5000),
                      st.integers(0, 20), st.integers(0, 3))


def _normal(ops):
    """Frees carry no size or alignment, and only memalign an alignment."""
    return [(op, i, 0 if op == FREE else s, a if op == MEMALIGN else 0, t)
            for op, i, s, a, t in ops]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(op_tuples, small_ops), max_size=60))
def test_binary_and_text_round_trip(ops):
    trace = Trace.from_ops(_normal(ops), description="round trip")
    assert len(trace) == len(ops)
    assert Trace.from_bytes(trace.to_bytes()) == trace
    assert Trace.from_text(trace.to_text()) == trace
    assert list(Trace.from_packed(trace.packed())) == list(trace)
    assert Trace.from_bytes(trace.to_bytes()).description == "round trip"


def test_packed_is_the_lab_record():
    trace = Trace.from_ops([(MALLOC, 0, 100), (MEMALIGN, 1, 64, 12, 2), (REALLOC, 0, 300),
                            (FREE, 1, 0, 0, 1), (CALLOC, 2, 80)])
    data = trace.packed()
    assert len(data) == 5 * 24
    assert struct.unpack_from("<BBHIQQ", data, 24) == (MEMALIGN, 12, 2, 0, 1, 64)
    assert list(trace)[1] == (MEMALIGN, 1, 64, 12, 2) == trace[1] == trace[-4]
    assert trace.n_objects == 3 and trace.n_threads == 3


def test_text_form_and_its_errors(tmp_path):
    trace = Trace.from_text("# header\nm 0 10\na 1 64 4096 t2  # aligned\nr 0 20\nf 1 t1\nf 0\n")
    assert list(trace) == [(MALLOC, 0, 10, 0, 0), (MEMALIGN, 1, 64, 12, 2), (REALLOC, 0, 20, 0, 0),
                           (FREE, 1, 0, 0, 1), (FREE, 0, 0, 0, 0)]
    assert "a 1 64 4096 t2" in trace.to_text()
    for bad, line in (("m 0\n", 1), ("f 0 1\n", 1), ("x 1 2\n", 1), ("m 0 10\na 1 10 24\n", 2),
                      ("m -1 10\n", 1), ("m 0 ten\n", 1), ("m 0 1 tx\n", 1)):
        with pytest.raises(TraceError) as error:
            Trace.from_text(bad)
        assert error.value.line == line, bad
    for text in (False, True):
        path = tmp_path / f"t.{text}"
        trace.save(path, text=text)
        assert T.load(path) == trace
    with pytest.raises(TraceError):
        Trace.from_bytes(b"PRMTRACE\x01\x05")          # truncated
    with pytest.raises(TraceError):
        Trace.from_bytes(trace.to_bytes() + b"\x00")   # garbage at the end


def test_problems_names_what_is_wrong():
    assert Trace.from_text("m 0 1\nf 0\n").problems() == []
    assert "already freed" in Trace.from_text("m 0 1\nf 0\nf 0\n").problems()[0]
    assert "not yet created" in Trace.from_text("f 0\n").problems()[0]
    assert "again" in Trace.from_text("m 0 1\nm 0 1\n").problems()[0]
    with pytest.raises(TraceError):
        Trace.from_text("r 0 5\n").check()


def _raw(records, pid=42):
    return (struct.pack("<8sII", b"PRMRAW01", 24, pid)
            + b"".join(struct.pack("<BBHIQQ", op, al, th, 0, addr, size)
                       for op, al, th, addr, size in records))


def test_raw_records_become_dense_ids():
    data = _raw([
        (1, 0, 5, 0x1000, 10),        # malloc -> id 0 (thread 5 is the first: thread 0)
        (2, 0, 5, 0x1000, 0),         # free id 0
        (1, 0, 9, 0x1000, 20),        # the address again: a new object, id 1, thread 1
        (3, 0, 9, 0x1000, 64),        # realloc begins ...
        (1, 0, 5, 0x1000, 7),         # ... another thread gets the old address: id 2
        (6, 0, 9, 0x2000, 64),        # ... realloc ends: id 1 moved
        (3, 0, 5, 0x2000, 1 << 60),   # realloc that fails: id 1 stays at 0x2000
        (6, 0, 5, 0, 1 << 60),
        (3, 0, 5, 0, 30),             # realloc(NULL, 30): a malloc, id 3
        (6, 0, 5, 0x3000, 30),
        (3, 0, 5, 0x3000, 0),         # realloc(p, 0): a free
        (6, 0, 5, 0, 0),
        (1, 0, 5, 0, 99),             # a failed malloc: dropped
        (2, 0, 5, 0x9999, 0),         # a free of an unknown address: dropped, counted
        (5, 12, 5, 0x4000, 50),       # memalign, align 4096
        (2, 0, 5, 0x2000, 0),
    ]) + b"\x01\x02"                  # a truncated record: dropped
    trace = Trace.from_raw(data)
    assert trace.to_text().splitlines()[1:] == [
        "m 0 10", "f 0", "m 1 20 t1", "m 2 7", "r 1 64 t1", "m 3 30", "f 3", "a 4 50 4096",
        "f 1"]
    assert trace.unknown_frees == 1 and trace.n_threads == 2 and "pid 42" in trace.description
    with pytest.raises(TraceError):
        Trace.from_raw(_raw([(1, 0, 0, 0x1000, 1), (1, 0, 0, 0x1000, 1)]))


# ---- generators -------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda seed: T.uniform(3000, 16, 4096, 200, seed),
    lambda seed: T.uniform(3000, 1, 100, 50, seed, realloc_fraction=0.2, threads=3),
    lambda seed: T.exponential(3000, mean_size=200, mean_lifetime=50, seed=seed),
    lambda seed: T.phased(4, 300, seed=seed),
])
def test_generators_are_deterministic_and_well_formed(make):
    first, again, other = make(1), make(1), make(2)
    assert first == again and first != other
    assert first.problems() == []
    summary = first.summary()
    assert summary.live_at_end == 0 and summary.objects == first.n_objects > 0
    ids = [oid for op, oid, *_ in first if op in T.CREATING]
    assert ids == list(range(first.n_objects))


def test_uniform_respects_its_bounds():
    trace = T.uniform(5000, 100, 200, 30, seed=3)
    assert len(trace) == 5000
    assert all(100 <= size <= 200 for op, _, size, _, _ in trace if op != FREE)
    assert trace.summary().peak_live_objects <= 30


def test_phased_objects_die_together():
    trace = T.phased(3, 100, temporaries=0.0, seed=0)
    ops = list(trace)
    assert [op for op, *_ in ops] == ([MALLOC] * 100 + [FREE] * 100) * 3


def test_seed_examples():
    for name in T.SEED_EXAMPLES:
        trace = T.seed_example(name)
        assert trace.problems() == [], name
        assert name in trace.description
    walk = T.seed_example("walkthrough")
    assert [s for op, _, s, _, _ in walk if op == MALLOC] == [30720, 40960, 204800, 102400, 40960]
    assert walk.summary().live_at_end == 1            # A stays
    assert T.seed_example("fits").summary().live_at_end == 0
    with pytest.raises(KeyError):
        T.seed_example("nope")


# ---- recording programs -------------------------------------------------------------------

def test_recording_a_known_program_gives_its_exact_sequence(known_program):
    recording = T.record_run([known_program])
    assert recording.report.exit_status == 0, recording.report.stderr
    assert recording.others == {}, "the fork child must not write a trace"
    trace = recording.trace
    assert trace.problems() == [] and trace.unknown_frees == 0
    ours = _only_sizes(trace, {100, 300, 200, 10, 512, 33, 77, 1234, 200000, 42, 24})
    assert ours.to_text().splitlines()[1:] == EXPECTED.split("\n")[1:-1]
    # The fork child's 1000 malloc(999) went nowhere, and libc's own calls are few.
    assert not any(size == 999 for _, _, size, _, _ in trace)
    assert len(trace) - len(ours) < 20


def test_recording_without_pid_in_the_path_never_overwrites(library, tmp_path):
    path = tmp_path / "one.raw"
    script = "import subprocess; [subprocess.run(['ls', '/'], stdout=-3) for _ in 'ab']"
    report = preload.run([sys.executable, "-c", script], options={"trace": str(path)})
    assert report.exit_status == 0
    assert report.stderr.count("the file exists") == 2       # both ls, not python
    trace = T.load(path)
    assert trace.problems() == [] and len(trace) > 0


def test_recording_a_multithreaded_program_is_consistent(library):
    stress = os.path.join(BIN, "preload_stress")
    if not os.path.exists(stress):
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
                        os.path.join(SOURCES, "stress.c"), "-o", stress], check=True)
    recording = T.record_run([stress, "4", "3000", "7"], timeout=120)
    assert recording.report.exit_status == 0, recording.report.stdout + recording.report.stderr
    trace = recording.trace
    assert trace.n_threads >= 5 and trace.unknown_frees == 0
    assert trace.problems() == []
    assert {op for op, *_ in trace} == {MALLOC, FREE, REALLOC, CALLOC, MEMALIGN}


def test_recording_cpython(library):
    script = "import json; d = {str(i): [i] * (i % 7) for i in range(3000)}; print(len(json.dumps(d)))"
    trace = T.record([sys.executable, "-c", script], env=dict(os.environ, PYTHONMALLOC="malloc"))
    assert len(trace) > 10_000 and trace.unknown_frees == 0
    assert trace.problems() == []
    size = len(trace.to_bytes())
    assert size / len(trace) < 4, "the binary form stays compact"


def test_recording_gcc(library, tmp_path):
    source = tmp_path / "prog.c"
    source.write_text("\n".join(f"static int f{i}(int x) {{ return x * {i}; }}" for i in range(50))
                      + "\nint main(void) { return f1(1); }\n")
    recording = T.record_run(["gcc", "-O2", "-c", str(source), "-o", str(tmp_path / "prog.o")],
                             timeout=120)
    assert recording.report.exit_status == 0
    cc1 = recording.largest()
    assert len(cc1) > 5000 and cc1.problems() == [] and cc1.unknown_frees == 0
    path = tmp_path / "cc1.trace"
    cc1.save(path)
    assert T.load(path) == cc1


def test_cli_trace(library, tmp_path, capsys):
    path = tmp_path / "true.txt"
    assert cli.main(["trace", "--text", "-o", str(path), "--", sys.executable, "-c", "pass"]) == 0
    err = capsys.readouterr().err
    assert "pymalloc-real trace:" in err and "ops" in err and "peak live" in err
    assert T.load(path).problems() == []
    assert cli.main(["trace", "--json", "-o", str(tmp_path / "t"), "--", "ls", "/"]) == 0
    assert json.loads(capsys.readouterr().out)["exit_status"] == 0
    # `true` never calls malloc: an empty recording is an error that says so.
    assert cli.main(["trace", "-o", str(tmp_path / "t"), "--", "true"]) == 2
    assert "recorded no allocation" in capsys.readouterr().err


# ---- profile and presize --------------------------------------------------------------------

def test_profile_and_presize(library, tmp_path):
    script = "x = [str(i) * 5 for i in range(100000)]; print(len(x))"
    env = dict(os.environ, PYTHONMALLOC="malloc")
    profile, report = T.profile([sys.executable, "-c", script], path=tmp_path / "p", env=env)
    assert report.exit_status == 0
    assert profile.heap_peak > 4 << 20 and profile.peak_live > 0 and profile.presized == 0
    assert sum(profile.classes.values()) > 50_000            # the strings, live at the peak
    plain = preload.run([sys.executable, "-c", script], env=env)
    presized = preload.run([sys.executable, "-c", script], env=env,
                           options={"presize": str(tmp_path / "p")})
    assert presized.exit_status == 0 and presized.stderr == ""
    # The heap was grown to the profile's peak at start-up: far fewer brk calls.
    assert presized.stats["brk_moves"] * 4 < plain.stats["brk_moves"]
    assert presized.stats["heap_bytes"] >= profile.heap_peak


def test_presize_grows_the_heap_at_start_up(library, tmp_path):
    path = tmp_path / "profile"
    T.Profile(heap_peak=8 << 20).save(path)
    report = preload.run(["true"], options={"presize": str(path)})
    assert report.stats["heap_bytes"] >= 8 << 20 and report.stats["brk_moves"] == 1
    assert report.minor_faults > 2000, "the presized heap is backed with pages"
    plain = preload.run(["true"])
    assert plain.stats["heap_bytes"] < 1 << 20


def test_presize_with_a_bad_profile_says_so_and_runs(library, tmp_path):
    report = preload.run(["true"], options={"presize": str(tmp_path / "missing")})
    assert report.exit_status == 0 and "cannot read the profile" in report.stderr
    (tmp_path / "empty").write_text("# nothing\n")
    report = preload.run(["true"], options={"presize": str(tmp_path / "empty")})
    assert report.exit_status == 0 and "no plausible heap_peak" in report.stderr
