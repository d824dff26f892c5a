"""Test helpers.

The allocator's state is process-wide: thresholds set with mallopt stay set, the
dynamic mmap threshold remembers every large free, and where our heap sits relative to
the program break depends on what ran before. Tests that need a pristine allocator
run their body in a fresh interpreter with ``@fresh_interpreter``; the subprocess
imports the test module and calls the undecorated function, so the test reads as
an ordinary test.
"""
import functools
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
_INSIDE = "PYMALLOC_REAL_FRESH_INTERPRETER"

from pymalloc_real.demo.walkthrough import pin_seed_thresholds   # noqa: F401 (re-exported)
from pymalloc_real.demo.glibc import reserve_glibc_slack          # noqa: F401 (re-exported)

KiB = 1024
MiB = 1024 * 1024


def fresh_interpreter(test, interpreter_flags=("-X", "dev")):
    """Run the decorated test in a new Python process; its failure fails the test."""
    if os.environ.get(_INSIDE):
        return test

    @functools.wraps(test)
    def run_in_child():
        module = test.__module__
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import {module}; "
                f"{module}.{test.__name__}()")
        env = dict(os.environ, **{_INSIDE: "1"})
        proc = subprocess.run([sys.executable, *interpreter_flags, "-c", code], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(
                f"{test.__name__} failed in a fresh interpreter (exit {proc.returncode}):\n"
                f"{proc.stderr[-6000:]}{proc.stdout[-2000:]}")

    return run_in_child


def fresh_plain_interpreter(test):
    """``fresh_interpreter`` without ``-X dev``, whose debug allocator hooks
    ``serve_python()`` refuses to sit under."""
    return fresh_interpreter(test, interpreter_flags=())


def compile_programs(sources, names, bin_dir, prefix, cflags, what):
    """Compile sources/NAME.c for each name into bin_dir/PREFIXNAME with gcc, in
    parallel; a compile error fails the test with gcc's output. {name: binary}."""
    import pytest
    os.makedirs(bin_dir, exist_ok=True)
    jobs = {}
    for name in names:
        binary = os.path.join(bin_dir, f"{prefix}{name}")
        argv = ["gcc", *cflags, os.path.join(sources, f"{name}.c"), "-o", binary]
        jobs[name] = (binary, argv, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                     stderr=subprocess.STDOUT, text=True))
    errors = []
    for name, (binary, argv, proc) in jobs.items():
        output, _ = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"$ {' '.join(argv)}\n{output}")
    if errors:
        pytest.fail(f"{what} did not compile:\n" + "\n".join(errors), pytrace=False)
    return {name: binary for name, (binary, _, _) in jobs.items()}


def program_headers(sources):
    """{program name: the first 1500 characters of its source} for each sources/*.c: the
    corpora (misuse, exploits, memory errors) state each program's expected outcome in
    its header comment."""
    headers = {}
    for name in sorted(os.listdir(sources)):
        if name.endswith(".c"):
            with open(os.path.join(sources, name), encoding="utf-8") as f:
                headers[name[:-2]] = f.read(1500)
    return headers


def preload_library():
    """The LD_PRELOAD library's path (the corpora's `library` fixtures)."""
    from pymalloc_real.preload import library_path
    return library_path()
