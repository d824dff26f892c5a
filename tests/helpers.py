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

from pymalloc_real.walkthrough import pin_seed_thresholds   # noqa: F401 (re-exported)
from pymalloc_real.glibc import reserve_glibc_slack          # noqa: F401 (re-exported)

KiB = 1024
MiB = 1024 * 1024


def fresh_interpreter(test):
    """Run the decorated test in a new Python process; its failure fails the test."""
    if os.environ.get(_INSIDE):
        return test

    @functools.wraps(test)
    def run_in_child():
        module = test.__module__
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import {module}; "
                f"{module}.{test.__name__}()")
        env = dict(os.environ, **{_INSIDE: "1"})
        proc = subprocess.run([sys.executable, "-X", "dev", "-c", code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(
                f"{test.__name__} failed in a fresh interpreter (exit {proc.returncode}):\n"
                f"{proc.stderr[-6000:]}{proc.stdout[-2000:]}")

    return run_in_child
