"""The core's threading under ThreadSanitizer (issue 14, "Done when" 2): tests/c/threads_tsan.c
compiled together with csrc/core/ with -fsanitize=thread. Producer/consumer pairs pass
blocks of every size range (small cache sizes, the cache's large classes, arena sizes)
from the thread that allocated them to one with an arena of its own, so that frees go
through the remote-free stacks, the thread caches and the arenas' locks at once; another
thread reallocs. Any data race TSan sees fails the run (halt_on_error), and the heap is
checked at the end. The allocator under test is the prm_ one, called directly: TSan keeps
its own malloc."""
import os
import subprocess

import pytest

from helpers import ROOT, compile_programs

CSRC = os.path.join(ROOT, "csrc", "core")
CORE = sorted(os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".c"))
FLAGS = ["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-fsanitize=thread",
         "-D_GNU_SOURCE", "-pthread", "-I", CSRC, *CORE]


@pytest.fixture(scope="module")
def tsan_binary():
    return compile_programs(os.path.join(ROOT, "tests", "c"), ["threads_tsan"],
                            os.path.join(ROOT, "tests", "c", "bin"), "", FLAGS,
                            "the ThreadSanitizer program")["threads_tsan"]


@pytest.mark.parametrize("pairs, blocks", [(1, 20000), (4, 20000), (8, 10000)])
def test_remote_frees_and_caches_race_free_under_tsan(tsan_binary, pairs, blocks):
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1:exitcode=66")
    proc = subprocess.run([tsan_binary, str(pairs), str(blocks)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-6000:]
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    line = proc.stdout.strip()
    assert line.startswith("threads_tsan ok:"), line
    # Three blocks in four went to a consumer, whose frees are remote (unless it shares
    # its producer's arena, once there are more threads than arena_max): at most that
    # many were freed remotely, some were, and none is left pending after malloc_trim.
    handed_over = pairs * (blocks - (blocks + 3) // 4)
    fields = dict(item.split("=") for item in line.split()[2:])
    assert 0 < int(fields["remote_frees"]) <= handed_over, line
    assert fields["remote_pending"] == "0", line
