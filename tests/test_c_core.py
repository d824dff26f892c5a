"""The core's C API, exercised by tests/c/core_test.c compiled together with csrc/core/
under AddressSanitizer and UndefinedBehaviorSanitizer. The allocator under test is the
prm_ one, not the process's malloc, so the sanitizers watch the core's own code for
out-of-bounds accesses, misaligned loads, overflows and other undefined behaviour,
while the test program checks results. One pytest item per named C check."""
import os
import re
import subprocess

import pytest

from helpers import ROOT

SOURCE = os.path.join(ROOT, "tests", "c", "core_test.c")
CSRC = os.path.join(ROOT, "csrc", "core")
# The core without the LD_PRELOAD library (csrc/preload/): this program calls prm_* and
# keeps glibc's malloc.
CORE = sorted(os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".c"))
BINARY = os.path.join(ROOT, "tests", "c", "bin", "core_test")
FLAGS = ["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-fno-omit-frame-pointer",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def _check_names():
    with open(SOURCE, encoding="utf-8") as f:
        return re.findall(r'\{ "(\w+)", test_\w+ \}', f.read())


@pytest.fixture(scope="session")
def core_test_binary():
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    proc = subprocess.run(["gcc", *FLAGS, "-I", CSRC, SOURCE, *CORE, "-o", BINARY, "-lpthread"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"core_test did not compile:\n{proc.stderr}")
    return BINARY


def test_every_check_is_collected():
    assert len(_check_names()) >= 10


@pytest.mark.parametrize("name", _check_names())
def test_core_c_api(core_test_binary, name):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([core_test_binary, name], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == f"ok {name}"
