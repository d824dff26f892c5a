"""The misuse corpus (issue 6, "Done when" 1): tests/c/misuse/, one small C program per
misuse, each stating in its header comment what must happen. Under the LD_PRELOAD
library each either dies by SIGABRT after exactly one report line naming the check, or
gets the documented error and exits 0. M_CHECK_ACTION's modes are shown on two of them.

The same misuses committed through the Python API are in test_misuse.py (the
"corpus through Python" tests): there they raise the named exception instead.
"""
import os
import re
import signal
import subprocess

import pytest

from helpers import ROOT, compile_programs, preload_library, program_headers

SOURCES = os.path.join(ROOT, "tests", "c", "misuse")
BIN = os.path.join(ROOT, "tests", "c", "bin")
# The misuses are deliberate: keep gcc from warning about (or optimising away) what it
# can see of them; opaque() in misuse.h hides the rest.
CFLAGS = ["-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wno-free-nonheap-object",
          "-Wno-use-after-free"]
REPORT_END = re.compile(r"\S: \S.* \(ptr 0x[0-9a-f]+\)$")


def _is_report(line, check):
    """The one-line format: 'pymalloc_real: CHECK: DETAIL (ptr 0x...)'."""
    prefix = f"pymalloc_real: {check}: "
    return line.startswith(prefix) and REPORT_END.search(line[len(prefix) - 3:]) is not None


def _expectations():
    """{program: (outcome, check or None, options)} from the header comments."""
    found = {}
    for name, header in program_headers(SOURCES).items():
        expect = re.search(r'expect: (abort "(?P<check>[^"]+)"|exit 0)', header)
        assert expect, f"{name}.c has no 'expect:' line"
        options = re.search(r"options: (\S+)", header)
        found[name] = ("abort" if expect.group("check") else "exit 0",
                            expect.group("check"), options.group(1) if options else "")
    return found


EXPECTED = _expectations()


@pytest.fixture(scope="module")
def corpus():
    return compile_programs(SOURCES, EXPECTED, BIN, "misuse_", CFLAGS, "the misuse corpus")


@pytest.fixture(scope="module")
def library():
    return preload_library()


def _run(binary, library, options="", extra_env=None):
    env = {key: value for key, value in os.environ.items()
           if key not in ("LD_PRELOAD", "PYMALLOC_REAL_OPTIONS", "MALLOC_CHECK_")}
    env["LD_PRELOAD"] = library
    env.update(extra_env or {})
    if options:
        env["PYMALLOC_REAL_OPTIONS"] = options
    return subprocess.run([binary], env=env, capture_output=True, text=True, timeout=30)


def test_the_corpus_covers_every_misuse_the_issue_lists():
    wanted = {"double_free_small", "double_free_fast", "double_free_tcache",
              "double_free_large", "double_free_mmapped", "free_stack", "free_global",
              "free_interior", "overflow_next_size", "uaf_tcache_links", "realloc_freed",
              "calloc_overflow", "reallocarray_overflow"}
    assert wanted <= set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_misuse_has_its_documented_outcome(corpus, library, name):
    outcome, check, options = EXPECTED[name]
    proc = _run(corpus[name], library, options)
    if outcome == "exit 0":
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        assert "pymalloc_real:" not in proc.stderr
        return
    assert proc.returncode == -signal.SIGABRT, (
        f"{name}: expected SIGABRT, got {proc.returncode}\n{proc.stderr}")
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"{name}: one report line expected, got:\n{proc.stderr}"
    assert _is_report(lines[0], check), f"{name}: expected a report of {check!r}: {lines[0]!r}"


# ---- M_CHECK_ACTION (glibc's bit meanings: 1 print, 2 abort, 4 brief) -----------------

@pytest.mark.parametrize("name", ["double_free_fast", "free_stack"])
@pytest.mark.parametrize("action, aborts, prints, brief", [
    (0, False, False, False),    # ignore: the operation fails, the program goes on
    (1, False, True, False),     # print and continue
    (2, True, False, False),     # abort silently
    (3, True, True, False),      # the default: print, then abort
    (5, False, True, True),      # a brief line, continue
    (7, True, True, True),       # a brief line, abort
])
def test_check_action_selects_print_abort_and_brief(corpus, library, name, action, aborts,
                                                    prints, brief):
    _, check, _ = EXPECTED[name]
    proc = _run(corpus[name], library, f"check_action={action}")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("pymalloc_real:")]
    if aborts:
        assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stderr)
    else:
        # The misuse was reported (or not) and refused; the program ran to its end,
        # which says "misuse went unnoticed" because it cannot tell.
        assert proc.returncode == 3, (proc.returncode, proc.stderr)
    if not prints:
        assert lines == [], proc.stderr
    elif brief:
        assert lines == [f"pymalloc_real: {check}"], proc.stderr
    else:
        assert len(lines) == 1 and _is_report(lines[0], check), proc.stderr


def test_glibc_malloc_check_variable_sets_the_action_and_our_option_wins(corpus, library):
    env = {"MALLOC_CHECK_": "1"}
    proc = _run(corpus["double_free_tcache"], library, extra_env=env)
    assert proc.returncode == 3 and "double free detected in tcache 2" in proc.stderr
    proc = _run(corpus["double_free_tcache"], library, "check_action=3", extra_env=env)
    assert proc.returncode == -signal.SIGABRT, proc.stderr


def test_continue_mode_leaves_a_working_allocator_after_refused_frees(corpus, library):
    """After a refused invalid free the program keeps allocating (the arena is sound)."""
    proc = _run(corpus["free_interior"], library, "check_action=1")
    assert proc.returncode == 3, proc.stderr
    assert "free(): invalid pointer" in proc.stderr
