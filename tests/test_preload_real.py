"""Real programs run unchanged on the LD_PRELOAD library (issue 4, Done when 4 and 5):
CPython's own regression tests for allocation-heavy modules with PYTHONMALLOC=malloc
(so every Python object goes through our malloc), gcc compiling a C file, sort of a
large generated file, and a Python workload, each compared with the same run on glibc.
The statistics file of each run proves our allocator served it."""
import hashlib
import os
import sys
import textwrap

import pytest

from pymalloc_real import preload

REGRESSION_MODULES = ["test_dict", "test_list", "test_set", "test_bytes", "test_unicode",
                      "test_threading", "test_json", "test_re", "test_collections", "test_gc"]


@pytest.fixture(scope="module")
def library():
    try:
        return preload.library_path()
    except FileNotFoundError as error:
        pytest.skip(f"library_path() raised FileNotFoundError: {error}")


def _served_by_us(report, at_least):
    assert report.stats is not None, report.notes
    calls = report.stats["calls"]
    assert calls["malloc"] + calls["calloc"] + calls["realloc"] >= at_least, calls
    return calls


def test_cpython_regression_tests_pass_on_our_malloc(library):
    report = preload.run([sys.executable, "-m", "test", *REGRESSION_MODULES],
                         env={"PYTHONMALLOC": "malloc"}, timeout=600)
    assert report.exit_status == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert "Result: SUCCESS" in report.stdout, report.stdout[-3000:]
    # Ten test modules with PYTHONMALLOC=malloc make tens of millions of calls.
    calls = _served_by_us(report, 1_000_000)
    assert calls["free"] > 1_000_000
    assert report.stats["arenas"] >= 2, "test_threading's threads got arenas of their own"


def _same_on_both(cmd, library_stats_minimum, **kwargs):
    ours = preload.run(cmd, allocator="pymalloc_real", timeout=300, **kwargs)
    theirs = preload.run(cmd, allocator="glibc", timeout=300, **kwargs)
    assert ours.exit_status == 0, ours.stderr[-2000:]
    assert theirs.exit_status == 0, theirs.stderr[-2000:]
    _served_by_us(ours, library_stats_minimum)
    return ours, theirs


def c_source(functions):
    """A C file of `functions` small functions, all called from main: work for gcc."""
    body = "\n".join(
        f"static int f{i}(int x) {{ return x * {i} + (x >> {i % 7}); }}" for i in range(functions))
    calls = " + ".join(f"f{i}(argc)" for i in range(functions))
    return f"{body}\nint main(int argc, char **argv) {{ (void)argv; return ({calls}) & 0x7f; }}\n"


def python_workload(words):
    """A Python script that counts `words` random words and prints a digest of a JSON dump."""
    return textwrap.dedent(f"""
        import collections, json, random
        rng = random.Random(7)
        words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 12)))
                 for _ in range({words})]
        counts = collections.Counter(words)
        table = {{w: [n] * (n % 50) for w, n in counts.items()}}
        print(len(json.dumps(table)), sum(counts.values()), counts.most_common(3))
    """)


def test_gcc_compiles_the_same_object_file(library, tmp_path):
    source = tmp_path / "prog.c"
    source.write_text(c_source(400))
    objects = [tmp_path / "ours.o", tmp_path / "glibc.o"]
    ours = preload.run(["gcc", "-O2", "-c", str(source), "-o", str(objects[0])],
                       allocator="pymalloc_real", timeout=300)
    theirs = preload.run(["gcc", "-O2", "-c", str(source), "-o", str(objects[1])],
                         allocator="glibc", timeout=300)
    assert ours.exit_status == 0 and theirs.exit_status == 0, ours.stderr + theirs.stderr
    assert objects[0].read_bytes() == objects[1].read_bytes()
    # gcc's driver execs cc1 and as: the compiler proper is one of the other reports.
    total = sum(s["calls"]["malloc"] for s in [ours.stats or {"calls": {"malloc": 0}},
                                                *ours.other_stats.values()])
    assert total > 10_000, (ours.stats, list(ours.other_stats))


def test_sort_of_a_large_file_gives_the_same_output(library, tmp_path):
    data = tmp_path / "lines.txt"
    lines = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(300_000)]
    data.write_text("\n".join(lines) + "\n")
    ours, theirs = _same_on_both(["sort", "--parallel=2", "-S", "64M", str(data)], 10)
    assert ours.stdout == theirs.stdout
    assert ours.stdout.splitlines() == sorted(lines)


def test_a_python_workload_gives_the_same_output(library):
    ours, theirs = _same_on_both([sys.executable, "-c", python_workload(200_000)], 100_000,
                                 env={"PYTHONMALLOC": "malloc"})
    assert ours.stdout == theirs.stdout and ours.stdout.strip()
