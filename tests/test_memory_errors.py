"""The memory-error corpus (issue 16, "Done when" 2): tests/c/memerrors/, one C program
per class of memory error (double, invalid and unaligned frees, reads and writes after
free small and large, 1- and 8-byte overflows, zero-size reads and writes, sized-delete
mismatches, malloc_usable_size of bad pointers...). Each states its outcome in the
default build and in hardened mode (hardened=1): a named abort, a trap (the access
faults), or a miss with its reason. Each program runs both ways under the LD_PRELOAD
library and must have exactly its stated outcome; the README's table lists them.
"""
import os
import re
import signal

import pytest

from helpers import ROOT, compile_programs, fresh_interpreter, preload_library, program_headers
from test_exploit_corpus import run

SOURCES = os.path.join(ROOT, "tests", "c", "memerrors")
BIN = os.path.join(ROOT, "tests", "c", "bin")
CFLAGS = ["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-free-nonheap-object",
          "-Wno-use-after-free", "-Wno-array-bounds", "-Wno-stringop-overflow",
          "-fno-builtin-malloc", "-fno-builtin-free"]
MODES = {"default": "", "hardened": "hardened=1"}
OUTCOME = re.compile(r'(?P<mode>default|hardened): (?:abort (?P<at_exit>at exit )?"(?P<check>[^"]+)"'
                     r'|(?P<trap>trap)(?: "(?P<trap_check>[^"]+)")?|missed: (?P<reason>.+))')


def _expectations():
    """{program: {mode: ("abort", check) | ("abort at exit", check) | ("trap", check or None)
    | ("missed", reason)}}. "abort at exit": the program ran to its end, and the check of
    the quarantine at exit found the damage. A trap with a check: the access faulted in
    memory hardened mode closed, and the fault handler (csrc/core/faults.c) named it
    before the program died of the signal."""
    found = {}
    for name, header in program_headers(SOURCES).items():
        outcomes = {}
        for m in OUTCOME.finditer(header):
            kind = ("abort at exit" if m.group("at_exit") else "abort") if m.group("check") else \
                "trap" if m.group("trap") else "missed"
            outcomes[m.group("mode")] = (kind, m.group("check") or m.group("trap_check") or m.group("reason"))
        assert set(outcomes) == set(MODES), f"{name}.c: needs a 'default:' and a 'hardened:' line"
        found[name] = outcomes
    return found


EXPECTED = _expectations()


@pytest.fixture(scope="module")
def programs():
    return compile_programs(SOURCES, EXPECTED, BIN, "memerror_", CFLAGS, "the memory-error corpus")


@pytest.fixture(scope="module")
def library():
    return preload_library()


def caught(mode):
    """The programs a mode stops (a named abort or a trap)."""
    return [name for name, outcomes in EXPECTED.items() if outcomes[mode][0] != "missed"]


def named(mode):
    """The programs a mode stops with a report naming the check (an abort, or a trap the
    fault handler names)."""
    return [name for name, outcomes in EXPECTED.items()
            if outcomes[mode][0] != "missed" and outcomes[mode][1] is not None]


def test_the_corpus_covers_the_classes_and_the_issue_s_bar():
    assert len(EXPECTED) >= 30
    # "Done when" 2: at least 27 of 30 in hardened mode, at least 16 in the default build,
    # held here to the stricter reading: detected with a named report.
    assert len(named("hardened")) >= len(EXPECTED) - 3
    assert len(named("default")) >= 16


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_memory_error_has_its_stated_outcome(programs, library, name, mode):
    kind, what = EXPECTED[name][mode]
    proc = run(programs[name], library, MODES[mode])
    if kind == "missed":
        assert proc.returncode == 3 and "misuse went unnoticed" in proc.stderr, (
            f"{name} ({mode}): expected a miss, got {proc.returncode}:\n{proc.stderr}")
    elif kind == "trap":
        assert proc.returncode in (-signal.SIGSEGV, -signal.SIGBUS), (
            f"{name} ({mode}): expected a trap, got {proc.returncode}:\n{proc.stderr}")
        lines = proc.stderr.splitlines()
        if what is None:
            assert lines == [], f"{name} ({mode}): an unnamed trap, yet:\n{proc.stderr}"
        else:
            assert len(lines) == 1 and lines[0].startswith(f"pymalloc_real: {what}: "), (
                f"{name} ({mode}): expected the trap named {what!r}, got:\n{proc.stderr}")
    else:
        assert proc.returncode == -signal.SIGABRT, (
            f"{name} ({mode}): expected SIGABRT, got {proc.returncode}:\n{proc.stderr}")
        lines = proc.stderr.splitlines()
        if kind == "abort at exit":
            assert lines[:1] == ["misuse went unnoticed"], proc.stderr
            lines = lines[1:]
        assert len(lines) == 1 and lines[0].startswith(f"pymalloc_real: {what}: "), (
            f"{name} ({mode}): expected one report of {what!r}, got:\n{proc.stderr}")


# ---- hardened mode from Python ---------------------------------------------------------

@fresh_interpreter
def test_hardened_mode_from_python_reports_a_write_after_free_with_its_offset():
    import ctypes
    import pymalloc_real as prm
    prm.mallopt(prm.M_HARDENED, 1)
    assert prm.stats().canary == 1                   # hardened mode brings the canary
    victim = prm.malloc(100)
    address = victim.address
    victim.free()
    ctypes.memmove(address + 40, b"X", 1)            # the write after free, behind the API
    caught = None
    for _ in range(2000):                            # push the victim out of the quarantine
        try:
            prm.malloc(100).free()
        except prm.HeapCorruption as error:
            caught = error
            break
    assert caught is not None and caught.check == "free(): write after free detected"
    assert "byte 40 " in str(caught)


@fresh_interpreter
def test_hardened_mode_zero_size_blocks_trap_and_quarantine_delays_reuse():
    import pymalloc_real as prm
    prm.mallopt(prm.M_HARDENED, 1)
    zero = prm.malloc(0)
    with open("/proc/self/maps") as maps:                 # its page is inaccessible
        page = zero.address & ~4095
        assert any(int(line.split("-")[0], 16) <= page < int(line.split()[0].split("-")[1], 16)
                   and line.split()[1].startswith("---") for line in maps)
    zero.free()
    first = prm.malloc(64)
    address = first.address
    first.free()
    again = [prm.malloc(64) for _ in range(100)]
    assert address not in {block.address for block in again}   # not reused at once
    for block in again:
        block.free()


def test_cpython_regression_tests_pass_in_hardened_mode(library):
    """Hardened mode raises no false alarm on a real program's millions of calls."""
    import sys
    from pymalloc_real import preload
    report = preload.run([sys.executable, "-m", "test", "test_dict", "test_list", "test_threading"],
                         env={"PYTHONMALLOC": "malloc"}, options={"hardened": 1}, timeout=600)
    assert report.exit_status == 0, report.stdout[-3000:] + report.stderr[-3000:]
    assert "Result: SUCCESS" in report.stdout, report.stdout[-3000:]
    assert report.stats["calls"]["free"] > 100_000, report.stats["calls"]


def test_a_cxx_sized_delete_of_the_wrong_type_is_reported(library, tmp_path):
    """C++'s sized delete reaches the library's _ZdlPvm (g++ passes the static type's
    size): deleting a Derived through a Base pointer without a virtual destructor."""
    import subprocess
    source = os.path.join(SOURCES, "sized_delete_wrong_type.cpp")
    binary = str(tmp_path / "sized_delete_wrong_type")
    subprocess.run(["g++", "-O1", "-std=c++17", "-fsized-deallocation", source, "-o", binary],
                   check=True)
    with open(source, encoding="utf-8") as f:
        expected = dict(re.findall(r'// (default|hardened): abort "([^"]+)"', f.read()))
    for mode, options in MODES.items():
        proc = run(binary, library, options)
        assert proc.returncode == -signal.SIGABRT, (mode, proc.returncode, proc.stderr)
        assert proc.stderr.startswith(f"pymalloc_real: {expected[mode]}: "), (mode, proc.stderr)
    assert run(binary).returncode == 3, "glibc lets it pass"


def test_the_fault_handler_names_only_its_own_faults_and_hands_the_rest_on(library, tmp_path):
    """Hardened mode's fault handler (csrc/core/faults.c) names a fault in memory it
    closed and leaves every other fault, and a handler the program installs, alone."""
    import subprocess
    binary = str(tmp_path / "fault_chain")
    subprocess.run(["gcc", "-O1", "-Wall", "-Wextra", "-Werror",
                    os.path.join(ROOT, "tests", "c", "preload", "fault_chain.c"), "-o", binary],
                   check=True)
    wild = run([binary, "wild"], library, "hardened=1")
    assert wild.returncode == -signal.SIGSEGV and wild.stderr == "", wild.stderr
    recover = run([binary, "recover"], library, "hardened=1")
    assert recover.returncode == 0 and recover.stdout == "recovered 2\n", (recover.stdout, recover.stderr)
    named = run([binary, "named"], library, "hardened=1")
    assert named.returncode == -signal.SIGSEGV, named.stderr
    assert named.stderr.startswith("pymalloc_real: segfault: read of a zero-size block: "), named.stderr
    assert len(named.stderr.splitlines()) == 1, named.stderr
    assert run([binary, "named"], library, "").returncode == 3   # default: malloc(0) is a real chunk

