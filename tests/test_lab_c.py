"""The placement-policy lab driven from C (tests/c/lab_test.c) under AddressSanitizer
and UndefinedBehaviorSanitizer, with the policies' invariant assertions compiled in
(-DLAB_DEBUG). The lab's policies are not the process's allocator, so the sanitizers
watch their code directly: random malloc/free/realloc/memalign with patterns, the walk
checked for overlaps, then a verified replay. One pytest item per policy."""
import os
import re
import subprocess

import pytest

from helpers import ROOT

SOURCE = os.path.join(ROOT, "tests", "c", "lab_test.c")
CSRC = os.path.join(ROOT, "csrc")
# The core (lab_real.c calls prm_*) without the LD_PRELOAD library, and the lab.
SOURCES = (sorted(os.path.join(CSRC, "core", f) for f in os.listdir(os.path.join(CSRC, "core"))
                  if f.endswith(".c"))
           + sorted(os.path.join(CSRC, "lab", f) for f in os.listdir(os.path.join(CSRC, "lab"))
                    if f.endswith(".c")))
BINARY = os.path.join(ROOT, "tests", "c", "bin", "lab_test")
FLAGS = ["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
         "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-DLAB_DEBUG", "-D_GNU_SOURCE"]


def _check_names():
    with open(SOURCE, encoding="utf-8") as f:
        return re.findall(r'\{"(\w+)", LAB_\w+\}', f.read())


@pytest.fixture(scope="session")
def lab_test_binary():
    os.makedirs(os.path.dirname(BINARY), exist_ok=True)
    proc = subprocess.run(["gcc", *FLAGS, "-I", CSRC, SOURCE, *SOURCES, "-o", BINARY,
                           "-lpthread"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"lab_test did not compile:\n{proc.stderr}")
    return BINARY


def test_every_region_policy_has_a_check():
    assert len(_check_names()) == 9


@pytest.mark.parametrize("name", _check_names())
def test_lab_policy_under_sanitizers(lab_test_binary, name):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([lab_test_binary, name], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith(f"ok {name}")
