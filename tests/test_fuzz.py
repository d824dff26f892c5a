"""The fuzz harness (issue 6): fuzz/fuzz_core.c, libFuzzer over the core in checked mode,
with ASan and UBSan. A bounded run here (FUZZ_SECONDS, default 45 s); `make fuzz` runs
it for an hour. The target itself traps on every broken promise: a crash, a report
against a program that committed no misuse, overlapping blocks, dirty calloc memory,
data lost by realloc, a failing prm_check on an undamaged heap.

Needs clang and libFuzzer's runtime, which `make test` installs (the fuzz-deps target).
"""
import os
import re
import shutil
import subprocess

import pytest

from helpers import ROOT

SECONDS = int(os.environ.get("FUZZ_SECONDS", "45"))


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    if shutil.which("clang") is None:
        pytest.fail("clang is missing: `make fuzz-deps` installs it (make test does)",
                    pytrace=False)
    binary = str(tmp_path_factory.mktemp("fuzz") / "fuzz_core")
    build = subprocess.run([os.path.join(ROOT, "fuzz", "build.sh"), binary],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    return binary


def test_bounded_fuzz_run_finds_no_crash_and_no_false_positive(fuzz_target, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run(
        [fuzz_target, f"-max_total_time={SECONDS}", "-timeout=10", "-seed=1",
         "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=SECONDS + 120,
        env=dict(os.environ, ASAN_OPTIONS="symbolize=1:detect_leaks=0"))
    artifacts = [name for name in os.listdir(tmp_path) if name != "corpus"]
    assert proc.returncode == 0 and not artifacts, (
        f"the fuzzer found a problem (artifacts: {artifacts}; reproduce with "
        f"fuzz/build.sh && fuzz/bin/fuzz_core FILE):\n{proc.stderr[-6000:]}")
    executed = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", proc.stderr).group(1))
    # A real run: tens of thousands of inputs on this VM; far fewer means it was broken.
    assert executed > 5000, proc.stderr[-2000:]
    assert len(os.listdir(corpus)) > 50     # coverage guidance found new paths


def test_the_target_can_fail(fuzz_target, tmp_path):
    """Its checks bite: in self-test mode the harness forgets that it damaged a header,
    so the core's (correct) report looks like a false positive and the target traps."""
    data = bytes([0, 0, 3, 100, 0, 1,                  # malloc(100) into slot 0
                  12, 0, 8, 0, *b"AAAAAAAA", 1,         # write over its size word
                  4, 0])                                # free it
    sample = tmp_path / "input"
    sample.write_bytes(data)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    # libFuzzer writes a crash (or slow-unit) artifact where -artifact_prefix says, by
    # default into the current directory: the repository, under pytest.
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    argv = [fuzz_target, f"-artifact_prefix={artifacts}/", str(sample)]
    before = set(os.listdir(ROOT))
    clean = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert clean.returncode == 0, clean.stderr[-3000:]
    tricked = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                             env=dict(env, PRM_FUZZ_SELFTEST="1"))
    assert tricked.returncode != 0 and "deadly signal" in tricked.stderr, tricked.stderr[-3000:]
    assert set(os.listdir(ROOT)) - before == set(), "the fuzzer left files in the repository"
