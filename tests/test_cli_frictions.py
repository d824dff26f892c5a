"""The command line as a careful user meets it (issue 17): Ctrl-C ends any command
quietly with status 130 after stopping the child it started; a mistake is one line on
stderr saying what was wrong and what is valid, status 2, before any work starts;
malformed and empty traces are refused; our library's options are checked with their
ranges (in Python before a run, in C at start-up); tables fit the terminal; the bare
command prints its usage; `pagesim --record` is guarded by a size limit and leaves
nothing in the current directory.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT

from pymalloc_real import preload
from pymalloc_real.cli import main
from pymalloc_real.preload import OptionError, parse_options

PY = sys.executable
HAS_VALGRIND = subprocess.run(["sh", "-c", "command -v valgrind"],
                              capture_output=True).returncode == 0
needs_valgrind = pytest.mark.skipif(not HAS_VALGRIND, reason="valgrind is not installed")


def _cli(*args, cwd=None, env=None, **popen):
    return subprocess.Popen([PY, "-m", "pymalloc_real", *args], cwd=cwd or ROOT,
                            env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def _one_error_line(capsys, command):
    """The captured stderr is one line naming the command, "error:" and the mistake."""
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pymalloc-real {command}: error: "), err
    return lines[0]


# ---- Ctrl-C ----------------------------------------------------------------------------------

def _alive(pid):
    """Whether ``pid`` is a running process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _interrupt(args, pidfile, cwd, env=None, allowed_stderr=()):
    """Start the command line, wait until the command it runs wrote its pid into
    ``pidfile``, send SIGINT to the command line alone, and check the ending: status
    130, no traceback, nothing on stderr but lines starting with ``allowed_stderr``
    (None: anything but an error), the child gone."""
    proc = _cli(*args, cwd=cwd, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (os.path.exists(pidfile) and open(pidfile).read().strip()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    child = int(open(pidfile).read())
    assert _alive(child)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "error" not in err, err
    if allowed_stderr is not None:
        assert [line for line in err.splitlines()
                if not line.startswith(allowed_stderr)] == [], err
    assert not _alive(child), "the child was left running"
    return out


def _sleeper(pidfile):
    return ["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"]


@pytest.mark.parametrize("command", [
    ["run", "-a", "glibc", "--"],
    ["run", "--"],
    ["compare", "--allocators", "glibc,pymalloc_real", "-n", "3", "--"],
    ["trace", "-o", "t.trace", "--"],
])
def test_ctrl_c_stops_the_child_and_ends_quietly_with_130(tmp_path, command):
    pidfile = tmp_path / "pid"
    # The library in sleep (exec'd by the traced sh, the same pid) says it keeps sh's
    # trace: the command's own stderr, not ours.
    _interrupt([*command, *_sleeper(pidfile)], str(pidfile), str(tmp_path),
               allowed_stderr=("pymalloc_real: trace: the file exists",))


SLEEPER_WORKLOAD = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    FILE *f = fopen(getenv("PRM_TEST_PIDFILE"), "w");
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    sleep(60);
    puts("checksum=0 ops=1");
    return 0;
}
"""


def test_ctrl_c_stops_a_benchmark_run(tmp_path):
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads" / "sleeper.c").write_text(SLEEPER_WORKLOAD)
    pidfile = tmp_path / "pid"
    _interrupt(["bench", "--bench-dir", str(tmp_path), "--workloads", "sleeper",
                "--allocators", "glibc", "--repeat", "1", "--out", str(tmp_path / "out")],
               str(pidfile), str(tmp_path), env={"PRM_TEST_PIDFILE": str(pidfile)},
               allowed_stderr=("bench:",))
    assert not (tmp_path / "out" / "results.json").exists()


@needs_valgrind
def test_ctrl_c_stops_a_recording_instead_of_simulating_what_it_left(tmp_path):
    pidfile = tmp_path / "pid"
    out = _interrupt(["pagesim", "--record", "--frames", "1-4", "--", *_sleeper(pidfile)],
                     str(pidfile), str(tmp_path), allowed_stderr=None)
    assert out == "", "nothing was simulated"
    assert sorted(os.listdir(tmp_path)) == ["pid"]


# ---- mistakes: one line, status 2, before the work ---------------------------------------

@pytest.mark.parametrize("argv, command, says", [
    # (A workload that does not exist: a run that takes the 0 for a default fails fast.)
    (["bench", "--repeat", "0", "--workloads", "nope"], "bench", "at least 1"),
    (["bench", "--threads", "0", "--workloads", "nope"], "bench", "at least 1"),
    (["run", "--timeout", "0", "--", "true"], "run", "above 0"),
    (["run", "--timeout", "-1", "--", "true"], "run", "above 0"),
    (["run", "--timeout", "soon", "--", "true"], "run", "not a number"),
    (["compare", "-n", "0", "--", "true"], "compare", "at least 1"),
    (["run", "-a", "/etc/passwd", "--", "true"], "run", "not a shared library"),
    (["run", "-o", "mmap_threshold=abc", "--", "true"], "run", "from 0 to 32M"),
    (["run", "-o", "perturb=300", "--", "true"], "run", "from 0 to 255"),
    (["run", "-o", "check_action=99", "--", "true"], "run", "0 to 7"),
    (["run", "-o", "stats=/no/dir/x.json", "--", "true"], "run", "does not exist"),
    (["bench", "--bench-dir", "/nope", "--workloads", "pairs"], "bench", "no workloads/"),
    (["pagesim", "--record", "--max-trace", "lots", "--", "true"], "pagesim", "a size"),
    (["replay", "/nonexistent.trace"], "replay", "No such file"),
])
def test_a_mistake_is_one_line_and_status_2(capsys, argv, command, says):
    assert main(argv) == 2
    line = _one_error_line(capsys, command)
    assert says in line, line
    assert "unknown workload" not in line


def test_usage_errors_of_argparse_are_one_line_too(capsys):
    assert main(["demo", "--step", "9"]) == 2
    line = _one_error_line(capsys, "demo")
    assert "invalid choice" in line and "pymalloc-real demo --help" in line


@pytest.mark.parametrize("argv, command, option", [
    (["demo", "--plot", "{file}"], "demo", "--plot"),
    (["bench", "--out", "{file}", "--workloads", "pairs", "--allocators", "glibc"], "bench",
     "--out"),
    (["pagesim", "{trace}", "--plot", "/no/dir/x.png"], "pagesim", "--plot"),
    (["replay", "{trace}", "--plot", "{tmp}"], "replay", "--plot"),
    (["trace", "-o", "/no/dir/t.trace", "--", "true"], "trace", "-o"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, argv, command, option):
    existing = tmp_path / "a-file"
    existing.write_text("x")
    trace = tmp_path / "t.txt"
    trace.write_text("m 0 100\nf 0\n")
    argv = [a.format(file=existing, trace=trace, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _one_error_line(capsys, command)
    assert option in line and "; give " in line, line
    assert capsys.readouterr().out == "", "nothing ran"


def test_pagesim_refuses_a_trace_read_as_the_wrong_format_or_empty(tmp_path, capsys):
    pages = tmp_path / "pages.txt"
    pages.write_text("1 2 3 4 1 2 5 1 2 3 4 5\n")
    assert main(["pagesim", str(pages), "--format", "lackey"]) == 2
    assert "no page references read as lackey output" in _one_error_line(capsys, "pagesim")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["pagesim", str(empty)]) == 2
    assert "no page references" in _one_error_line(capsys, "pagesim")


@pytest.mark.parametrize("text, says", [
    ("", "holds no operations"),
    ("# a comment, no operation\n", "holds no operations"),
    ("m 0 100\nf 0\nf 0\n", "free of object 0, which is already freed"),
    ("m 0 100\nf 1\n", "free of object 1, which is not yet created"),
])
def test_replay_refuses_an_empty_or_malformed_trace(tmp_path, capsys, text, says):
    path = tmp_path / "t.txt"
    path.write_text(text)
    assert main(["replay", str(path), "--policies", "first_fit"]) == 2
    assert says in _one_error_line(capsys, "replay")


# ---- trace --json lets the command's output through ---------------------------------------

def test_trace_json_lets_the_commands_output_through_to_stderr(tmp_path):
    # A program that allocates (an empty recording is an error): the interpreter.
    proc = _cli("trace", "--json", "-o", str(tmp_path / "t.trace"), "--", sys.executable, "-c",
                "import sys; print('to-stdout'); print('to-stderr', file=sys.stderr)",
                cwd=str(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "to-stdout" in err and "to-stderr" in err
    assert json.loads(out)["file"] == str(tmp_path / "t.trace")


# ---- PYMALLOC_REAL_OPTIONS --------------------------------------------------------------------

def test_options_accept_spaces_and_refuse_values_out_of_range():
    assert parse_options("mmap_threshold=64K, perturb=85 ,check_action = 5") == {
        "mmap_threshold": "64K", "perturb": "85", "check_action": "5"}
    for text, valid in (("check_action=99", "0 to 7"), ("perturb=300", "0 to 255"),
                        ("mmap_threshold=abc", "0 to 32M"), ("canary=2", "0 or 1"),
                        ("arena_max=0", "at least 1"), ("tcache_count=-1", "0 to 65535")):
        with pytest.raises(OptionError, match=valid):
            parse_options(text)
    with pytest.raises(OptionError, match="does not exist"):
        parse_options("stats=/no/dir/x.json")
    assert parse_options("trim_threshold=-1, mmap_threshold=0x10000") == {
        "trim_threshold": "-1", "mmap_threshold": "0x10000"}


def test_the_library_reads_options_after_spaces_and_says_what_is_valid(tmp_path):
    stats = tmp_path / "stats.json"
    env = dict(os.environ, LD_PRELOAD=preload.library_path(), PYMALLOC_REAL_OPTIONS=(
        f"mmap_threshold=64K, perturb=300, check_action=99, tcache_count = 3, "
        f"stats={tmp_path}/no/dir/x.json, stats={stats}"))
    proc = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    lines = proc.stderr.splitlines()
    assert "unknown key" not in proc.stderr, proc.stderr
    assert any("'perturb=300' ignored: give a byte from 0 to 255" in l for l in lines), lines
    assert any("'check_action=99' ignored: give M_CHECK_ACTION's bits, 0 to 7" in l
               for l in lines), lines
    assert any("no existing directory" in l and "/no/dir/x.json" in l for l in lines), lines
    assert len(lines) == 3, lines
    report = json.loads(stats.read_text())      # the stats= after a space was read
    assert report["mmap_threshold"] == 64 * 1024 and report["tcache_count"] == 3


# ---- terminal output -------------------------------------------------------------------------

def test_tables_fit_the_terminal_and_stay_markdown_when_asked(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    argv = ["compare", "--allocators", "glibc,pymalloc_real", "-n", "1", "--", "true"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert not any(line.startswith("|") for line in out.splitlines())
    assert "allocator: glibc" in out and "allocator: pymalloc_real" in out
    assert main([*argv[:1], "--markdown", *argv[1:]]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and max(len(row) for row in rows) > 80     # with the |---| line


def test_a_wide_table_becomes_one_block_per_row():
    from pymalloc_real.cli import tables
    table = "| name | a long column header | b |\n|---|---:|---:|\n| x | 1 | 2 |\n| y | 3 | 4 |"
    assert tables.fit(table, columns=200) == table
    assert tables.fit(table, markdown=True, columns=10) == table
    assert tables.fit(table, columns=34).splitlines() == [
        "name: x", "  a long column header  1", "  b                     2", "",
        "name: y", "  a long column header  3", "  b                     4"]


def test_the_demo_follows_the_terminal_width():
    proc = _cli("demo", "--step", "2", env={"COLUMNS": "70"})
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert max(len(line) for line in out.splitlines()) <= 70
    assert "== Step 2" in out


def test_python_m_pymalloc_real_works_from_anywhere(tmp_path):
    for args, expected in ((["--version"], "pymalloc-real "), ([], "usage: pymalloc-real")):
        proc = _cli(*args, cwd=str(tmp_path))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and out.startswith(expected), out + err


# ---- pagesim --record: a size limit, progress, no file left behind --------------------------

@needs_valgrind
def test_recording_stops_at_its_size_limit_and_leaves_nothing(tmp_path):
    proc = _cli("pagesim", "--record", "--max-trace", "1M", "--", "ls", "/",
                cwd=str(tmp_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "passed 1.0 MiB" in errors[0] and "--max-trace" in errors[0]
    assert out == "" and os.listdir(tmp_path) == []


@needs_valgrind
def test_recording_goes_to_a_temporary_file_and_reports_its_size(tmp_path):
    proc = _cli("pagesim", "--record", "--frames", "2,4", "--", "ls", "/",
                cwd=str(tmp_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "temporary file" in err and "recorded " in err and " MiB in " in err
    assert "| 4 |" in out
    assert os.listdir(tmp_path) == [], "the recording was left in the current directory"


@needs_valgrind
def test_record_reports_progress_and_its_limit(tmp_path):
    from pymalloc_real import lackey
    seen = []
    path = tmp_path / "ls.lackey"
    recording = lackey.record(["ls", "/"], path, stdout=subprocess.DEVNULL,
                              progress=lambda size, seconds: seen.append((size, seconds)))
    assert recording.size == os.path.getsize(path) and seen[-1][0] == recording.size
    assert [s for s, _ in seen] == sorted(s for s, _ in seen) and len(seen) >= 2
    with pytest.raises(lackey.TraceTooLarge, match="passed"):
        lackey.record(["ls", "/"], path, stdout=subprocess.DEVNULL, limit=64 * 1024)
    assert not path.exists()
