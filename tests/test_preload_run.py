"""Running commands on allocators (issue 4): finding our preload library and the peers',
`run` (wait4's numbers of that one child, signals, timeouts, captured output, options
and statistics for our library only, errors for missing libraries), `compare`
(interleaved runs, table, missing peers reported, failures and differing output
flagged) and the `run`/`compare` subcommands.

Peer cases run for each peer installed (`make peers`) and are skipped otherwise, with
the package to install as the reason. Cases that need our own library are skipped only
while `library_path()` raises FileNotFoundError (the library not built yet). The
plumbing of options and statistics is also tested without it: a file named like our
library, which the dynamic loader refuses (and says so on stderr) while the command
runs on, and a child that writes the statistics file itself.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import pymalloc_real

from pymalloc_real.preload import comparison as compare_module
from pymalloc_real import preload
from pymalloc_real.cli import main
from pymalloc_real.preload import (ALLOCATORS, OURS, PEERS, LibraryMissing, OptionError,
                                   PeerMissing)

MiB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")
PY = sys.executable


def _library_or_reason(name):
    """(library path, None) for an installed allocator, (None, why it is skipped)."""
    try:
        return preload.resolve(name).library, None
    except LibraryMissing as error:
        if name == OURS:
            return None, ("our preload library is not built (library_path() raised "
                          f"FileNotFoundError): {error.hint}")
        return None, f"{name} is not installed: {error.hint}"


def _allocator_params(names):
    params = []
    for name in names:
        _, reason = _library_or_reason(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


needs_ours = pytest.mark.skipif(_library_or_reason(OURS)[1] is not None,
                                reason=_library_or_reason(OURS)[1] or "")

# Touch 200 MiB through malloc (bytearray) so the allocator under test serves it: RSS.
TOUCH_200_MIB = textwrap.dedent("""
    n = 200 << 20
    block = bytearray(n)
    block[::4096] = b"\\x01" * (n // 4096)
    maps = open("/proc/self/maps").read()
    print("\\n".join(sorted({line.split()[-1] for line in maps.splitlines()
                             if ".so" in line})))
""")


# The first 64 bytes of an ELF shared object's header (ET_DYN) and nothing more: resolve()
# takes it for a library, the loader refuses it (and the command runs anyway).
ELF_STUB = b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + bytes(46)


@pytest.fixture
def fake_ours(tmp_path):
    """A file named like our library, with the start of an ELF shared object's header
    and nothing else: the loader refuses to preload it and says so on stderr, the
    command runs anyway, and run() treats the path as ours."""
    path = tmp_path / "_preload.abi3.so"
    path.write_bytes(ELF_STUB)
    return str(path)


# ---- finding libraries -----------------------------------------------------------------------

def test_library_path_searches_the_package_directory_for_each_extension_suffix(
        tmp_path, monkeypatch):
    monkeypatch.setattr(preload.libraries, "_package_directories", lambda: [str(tmp_path)])
    # The last suffix (plain .so) is found when the more specific ones are absent.
    suffixes = preload.libraries.importlib.machinery.EXTENSION_SUFFIXES
    (tmp_path / f"_preload{suffixes[-1]}").write_bytes(b"")
    assert preload.library_path() == str(tmp_path / f"_preload{suffixes[-1]}")
    (tmp_path / f"_preload{suffixes[0]}").write_bytes(b"")
    assert preload.library_path() == str(tmp_path / f"_preload{suffixes[0]}")


def test_missing_library_says_what_was_searched_and_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(preload.libraries, "_package_directories", lambda: [str(tmp_path)])
    with pytest.raises(FileNotFoundError) as caught:
        preload.library_path()
    message = str(caught.value)
    assert str(tmp_path) in message and "_preload" in message
    assert "make build" in message and "reinstall" in message
    assert caught.value.searched and all(p.startswith(str(tmp_path))
                                         for p in caught.value.searched)


@needs_ours
def test_library_path_is_in_the_installed_package():
    path = preload.library_path()
    assert os.path.dirname(path) == os.path.dirname(os.path.abspath(pymalloc_real.__file__))
    assert os.path.basename(path).startswith("_preload")


def test_a_missing_peer_names_its_debian_package_and_make_peers(tmp_path, monkeypatch):
    monkeypatch.setattr(preload.libraries, "library_directories", lambda: (str(tmp_path),))
    for name, peer in PEERS.items():
        with pytest.raises(PeerMissing) as caught:
            preload.run(["true"], allocator=name)
        assert isinstance(caught.value, FileNotFoundError)
        message = str(caught.value)
        assert peer.package in message and "make peers" in message and peer.soname in message


def test_a_nonexistent_allocator_path_raises_peer_missing():
    with pytest.raises(PeerMissing, match="/nonexistent/libnothing.so"):
        preload.run(["true"], allocator="/nonexistent/libnothing.so")


def test_an_unknown_allocator_name_is_refused():
    with pytest.raises(OptionError, match="unknown allocator 'dlmalloc'"):
        preload.run(["true"], allocator="dlmalloc")


def test_library_directories_start_with_the_multiarch_directory():
    directories = preload.library_directories()
    triplets = preload.libraries._multiarch_triplets()
    if triplets:            # e.g. x86_64-linux-gnu, from the machine's name
        assert directories[:2] == (f"/usr/lib/{triplets[0]}", f"/lib/{triplets[0]}")
    assert {"/usr/lib64", "/usr/local/lib"} <= set(directories)


# ---- run: what wait4 tells about the child ----------------------------------------------------

def test_true_under_glibc():
    report = preload.run(["true"], allocator="glibc")
    assert report.ok and report.exit_status == 0 and report.signal is None
    assert report.allocator == "glibc" and report.library is None and report.stats is None
    assert report.wall_time > 0 and report.max_rss > 0 and report.minor_faults > 0
    assert report.stdout == "" and report.stderr == ""


def test_output_is_captured_and_input_given():
    code = "import sys; data = sys.stdin.read(); print(data.upper()); print('err', file=sys.stderr)"
    report = preload.run([PY, "-c", code], allocator="glibc", input="hello")
    assert report.stdout == "HELLO\n" and report.stderr == "err\n"


def test_without_capture_the_output_passes_through(capfd):
    report = preload.run([PY, "-c", "print('through')"], allocator="glibc", capture=False)
    assert report.stdout is None and report.stderr is None
    assert "through" in capfd.readouterr().out


def test_exit_status_is_the_commands():
    report = preload.run(["sh", "-c", "exit 7"], allocator="glibc")
    assert report.exit_status == 7 and not report.ok and report.shell_status == 7


def test_a_child_killed_by_a_signal_reports_the_signal():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    report = preload.run([PY, "-c", code], allocator="glibc")
    assert report.signal == signal.SIGTERM and report.signal_name == "SIGTERM"
    assert report.exit_status is None and report.shell_status == 128 + signal.SIGTERM
    assert not report.timed_out


def test_a_timeout_kills_the_child():
    report = preload.run(["sleep", "30"], allocator="glibc", timeout=0.2)
    assert report.timed_out and report.signal == signal.SIGKILL
    assert 0.2 <= report.wall_time < 10
    assert any("timed out" in note for note in report.notes)


def test_a_command_not_found_raises_before_anything_runs():
    with pytest.raises(FileNotFoundError, match="command not found: no-such-command-here"):
        preload.run(["no-such-command-here"], allocator="glibc")


def test_peak_rss_and_minor_faults_of_a_child_touching_200_MiB():
    # An anonymous mapping without huge pages: one fault per 4 KiB page touched.
    code = textwrap.dedent("""
        import mmap
        n = 200 << 20
        m = mmap.mmap(-1, n)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        m[::4096] = b"\\x01" * (n // 4096)
    """)
    report = preload.run([PY, "-c", code], allocator="glibc")
    assert report.ok, report.stderr
    assert report.max_rss >= 200 * MiB
    assert report.minor_faults >= 200 * MiB // PAGE


def test_a_small_child_is_not_charged_this_processs_peak():
    """The kernel charges the replaced address space's peak RSS to a program at exec; a
    child started from a big process must still report its own small peak."""
    if preload.runner._launcher() is None:
        pytest.skip("perl or the child subreaper is not available: children start "
                    "directly from this process and may carry its peak")
    code = textwrap.dedent("""
        from pymalloc_real import preload
        n = 300 << 20
        big = bytearray(n)
        big[::4096] = b"\\x01" * (n // 4096)
        report = preload.run(["true"], allocator="glibc")
        assert report.launcher == "perl", report
        assert report.max_rss < 64 << 20, report.max_rss
    """)
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_started_directly_the_report_warns_of_this_processs_peak(monkeypatch):
    monkeypatch.setattr(preload.runner, "_launcher", lambda: None)
    report = preload.run(["true"], allocator="glibc")
    assert report.ok and report.launcher == "direct"
    assert any("may be this process's" in note for note in report.notes)


def test_glibc_runs_without_stray_preload_variables():
    env = dict(os.environ, LD_PRELOAD="", PYMALLOC_REAL_OPTIONS="stats=/x")
    code = "import os; print(os.environ.get('LD_PRELOAD'), os.environ.get('PYMALLOC_REAL_OPTIONS'))"
    report = preload.run([PY, "-c", code], allocator="glibc", env=env)
    assert report.stdout == "None None\n"


# ---- options and statistics ------------------------------------------------------------------

def test_options_parse_from_a_string_or_a_dict():
    assert preload.parse_options("mmap_threshold=65536, perturb=1") == {
        "mmap_threshold": "65536", "perturb": "1"}
    assert preload.parse_options({"top_pad": 0, "check_action": True}) == {
        "top_pad": "0", "check_action": "1"}
    assert preload.format_options({"mxfast": "64", "arena_max": "2"}) == "mxfast=64,arena_max=2"
    assert preload.parse_options(None) == {} and preload.parse_options("") == {}


@pytest.mark.parametrize("bad", ["mmap_treshold=1", "mmap_threshold", {"perturb": ""},
                                 {"stats": "a,b"}])
def test_bad_options_are_refused(bad):
    with pytest.raises(OptionError):
        preload.parse_options(bad)


@pytest.mark.parametrize("allocator", ["glibc", "jemalloc", "mimalloc", "tcmalloc",
                                       "/usr/lib/libsomething.so"])
def test_options_are_refused_for_allocators_other_than_ours(allocator):
    with pytest.raises(OptionError, match="pymalloc_real's library only"):
        preload.run(["true"], allocator=allocator, options={"mmap_threshold": 65536})


def test_options_and_the_stats_path_reach_our_library(fake_ours):
    # The child plays the library's part at exit: it writes the statistics file.
    code = textwrap.dedent("""
        import json, os
        options = dict(item.split("=", 1)
                       for item in os.environ["PYMALLOC_REAL_OPTIONS"].split(","))
        print(os.environ["LD_PRELOAD"])
        print(options["mmap_threshold"])
        own = options["stats"].replace("%p", str(os.getpid()))
        json.dump({"calls": {"malloc": 3}, "peak_in_use": 123}, open(own, "w"))
        # A descendant's report, as the library would write it for a child process.
        json.dump({"calls": {"malloc": 1}}, open(options["stats"].replace("%p", "1"), "w"))
    """)
    report = preload.run([PY, "-c", code], allocator=fake_ours,
                         options="mmap_threshold=65536")
    assert report.ok, report.stderr
    assert report.stdout.splitlines() == [fake_ours, "65536"]
    assert report.stats == {"calls": {"malloc": 3}, "peak_in_use": 123}
    assert report.other_stats == {1: {"calls": {"malloc": 1}}}
    assert report.options["mmap_threshold"] == "65536" and "%p" in report.options["stats"]
    assert not os.path.exists(os.path.dirname(report.options["stats"]))   # cleaned up


def test_no_statistics_file_gives_none_and_a_note(fake_ours):
    report = preload.run(["true"], allocator=fake_ours)
    assert report.ok and report.stats is None
    assert any("no statistics" in note for note in report.notes)


def test_an_invalid_statistics_file_gives_none_and_a_note(fake_ours):
    code = ("import os; path = os.environ['PYMALLOC_REAL_OPTIONS'].split('stats=')[1]; "
            "open(path.replace('%p', str(os.getpid())), 'w').write('{not json')")
    report = preload.run([PY, "-c", code], allocator=fake_ours)
    assert report.ok and report.stats is None
    assert any("not valid JSON" in note for note in report.notes)


def test_stats_false_sets_no_stats_path(fake_ours):
    code = "import os; print(os.environ.get('PYMALLOC_REAL_OPTIONS'))"
    report = preload.run([PY, "-c", code], allocator=fake_ours, stats=False)
    assert report.stdout == "None\n" and report.stats is None and not report.notes


# ---- every allocator --------------------------------------------------------------------------

@pytest.mark.parametrize("allocator", _allocator_params(ALLOCATORS))
def test_each_allocator_is_preloaded_and_serves_a_200_MiB_child(allocator):
    library = preload.resolve(allocator).library
    report = preload.run([PY, "-c", TOUCH_200_MIB], allocator=allocator)
    assert report.ok, report.stderr
    assert report.library == library and report.max_rss >= 200 * MiB
    mapped = report.stdout.splitlines()
    if library is None:
        assert not any(os.path.basename(p).startswith(("libjemalloc", "libmimalloc",
                                                       "libtcmalloc", "_preload"))
                       for p in mapped)
    else:
        assert os.path.realpath(library) in {os.path.realpath(p) for p in mapped}


@pytest.mark.parametrize("allocator", _allocator_params(PEERS))
def test_true_under_each_peer(allocator):
    report = preload.run(["true"], allocator=allocator)
    assert report.ok and report.library.endswith(PEERS[allocator].soname)


@needs_ours
def test_our_library_writes_statistics_with_options():
    report = preload.run([PY, "-c", "print(sum(range(1000)))"],
                         options={"mmap_threshold": 65536})
    assert report.ok, report.stderr
    assert report.stdout == "499500\n"
    assert isinstance(report.stats, dict) and report.stats, report.notes
    assert not report.notes


@needs_ours
def test_our_library_reports_each_process_of_the_run():
    code = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'], check=True)"
    report = preload.run([PY, "-c", code])
    assert report.ok, report.stderr
    assert report.stats is not None and len(report.other_stats) == 1, report.notes
    assert report.pid not in report.other_stats


@needs_ours
def test_our_library_killed_by_a_signal_leaves_a_note_instead_of_statistics():
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    report = preload.run([PY, "-c", code])
    assert report.signal == signal.SIGKILL and report.stats is None
    assert any("no statistics" in note for note in report.notes)


# ---- compare ----------------------------------------------------------------------------------

def test_compare_table_has_every_allocator_and_the_ratio_columns():
    allocators = ALLOCATORS + ("/nonexistent/libnothing.so",)
    result = preload.compare(["true"], allocators=allocators, repeat=2)
    table = result.table()
    for name in allocators:
        assert f"| {name} |" in table
    for label in ("wall", "CPU", "peak RSS", "minor faults"):
        assert f"{label} / glibc" in table
    assert result.baseline == "glibc"
    missing = {r.name for r in result.missing}
    assert "/nonexistent/libnothing.so" in missing
    assert "make peers" in table
    for r in result.allocators:
        if r.missing:
            assert r.name in missing and not r.runs
        else:
            assert len(r.runs) == 2 and r.runs_ok == 2 and r.same_stdout is True
            assert r.ratios["wall_time"] > 0
    assert result.ok
    glibc = next(r for r in result.allocators if r.name == "glibc")
    assert all(ratio == 1 for ratio in glibc.ratios.values())


def test_compare_interleaves_the_runs(tmp_path):
    libraries = []
    for name in ("liba.so", "libb.so"):
        (tmp_path / name).write_bytes(ELF_STUB)
        libraries.append(str(tmp_path / name))
    order = []
    result = preload.compare(["true"], allocators=["glibc", *libraries], repeat=3,
                             progress=lambda done, total, name: order.append(name))
    assert order[:-1] == ["glibc", libraries[0], libraries[1],
                          libraries[0], libraries[1], "glibc",
                          libraries[1], "glibc", libraries[0]]
    assert order[-1] == ""      # the final call says the runs are over
    assert all(len(r.runs) == 3 for r in result.allocators)


def test_compare_flags_failed_runs_and_different_output(tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(ELF_STUB)
    # Prints its LD_PRELOAD and fails when there is one: both checks trip for the fake.
    cmd = ["sh", "-c", 'echo "$LD_PRELOAD"; test -z "$LD_PRELOAD"']
    result = preload.compare(cmd, allocators=["glibc", str(fake)], repeat=1)
    glibc, other = result.allocators
    assert not result.ok
    assert glibc.same_stdout and not glibc.failures
    assert other.same_stdout is False and len(other.failures) == 1
    assert other.failures[0].startswith("run 1: exit status 1 (")   # + its last stderr line
    table = result.table()
    assert "| 0/1 |" in table and "NO" in table and "stdout differs" in table

    unchecked = preload.compare(["sh", "-c", 'echo "$LD_PRELOAD"'],
                                allocators=["glibc", str(fake)], repeat=1, check_stdout=False)
    assert unchecked.ok and all(r.same_stdout is None for r in unchecked.allocators)


def test_compare_without_glibc_takes_the_first_allocator_as_baseline(tmp_path):
    fake = tmp_path / "libfake.so"
    fake.write_bytes(ELF_STUB)
    result = preload.compare(["true"], allocators=[str(fake)], repeat=1)
    assert result.baseline == str(fake)
    assert any("ratios are to" in note for note in result.notes)


def test_compare_as_dict_is_json():
    result = preload.compare(["true"], allocators=["glibc", "/nonexistent/lib.so"], repeat=1)
    data = json.loads(json.dumps(result.as_dict()))
    assert data["ok"] and data["baseline"] == "glibc" and data["repeat"] == 1
    glibc, missing = data["allocators"]
    assert set(glibc["metrics"]) == {m.attribute for m in compare_module.METRICS}
    assert glibc["metrics"]["max_rss"]["median"] > 0 and len(glibc["each_run"]) == 1
    assert missing["missing"] and "make peers" in missing["missing"]


def test_compare_refuses_options_without_our_library_and_a_zero_repeat():
    with pytest.raises(OptionError, match="not among"):
        preload.compare(["true"], allocators=["glibc"], options="perturb=1")
    with pytest.raises(OptionError, match="repeat"):
        preload.compare(["true"], allocators=["glibc"], repeat=0)


# ---- the command line ---------------------------------------------------------------------------

def test_cli_run_json_captures_the_output(capsys):
    code = main(["run", "--allocator", "glibc", "--json", "--", PY, "-c", "print(42)"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["stdout"] == "42\n" and report["allocator"] == "glibc"
    assert report["exit_status"] == 0 and report["max_rss"] > 0


def test_cli_run_report_goes_to_stderr_and_the_exit_code_is_the_commands(capsys):
    assert main(["run", "-a", "glibc", "--", "sh", "-c", "exit 3"]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pymalloc-real run: sh -c 'exit 3'" in captured.err
    for label in ("allocator  glibc (no preload)", "status 3", "wall", "CPU", "peak RSS",
                  "minor"):
        assert label in captured.err


def test_cli_run_reports_a_signal(capsys):
    assert main(["run", "-a", "glibc", "--", "sh", "-c", "kill -TERM $$"]) == 143
    assert "killed by SIGTERM" in capsys.readouterr().err


def test_cli_run_shows_options_and_statistics(fake_ours, capsys):
    code = ("import json, os; opts = os.environ['PYMALLOC_REAL_OPTIONS']; "
            "json.dump({'calls': {'malloc': 5, 'free': 0}, 'peak_in_use': 4096}, "
            "open(opts.split('stats=')[1].replace('%p', str(os.getpid())), 'w'))")
    assert main(["run", "-a", fake_ours, "-o", "perturb=85", "--", PY, "-c", code]) == 0
    err = capsys.readouterr().err
    assert "options    perturb=85" in err
    lines = {line.split()[0]: line for line in err.splitlines() if line.startswith("    ")}
    assert lines["calls"].split() == ["calls", "malloc", "5"]      # zero counts left out
    assert lines["peak_in_use"].split() == ["peak_in_use", "4,096"]


@pytest.mark.parametrize("argv, message", [
    (["run", "-a", "glibc", "-o", "perturb=1", "--", "true"], "pymalloc_real's library only"),
    (["run", "-a", "glibc", "--", "no-such-command-here"], "command not found"),
    (["run", "-a", "glibc"], "no command given"),
    (["run", "-a", "/nonexistent/libnothing.so", "--", "true"], "make peers"),
    (["run", "-a", "glibc", "-o", "bogus=1", "--", "true"], "unknown option 'bogus'"),
])
def test_cli_run_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pymalloc-real run: error: ") and message in err


def test_cli_compare_prints_the_table_and_names_make_peers_for_missing(capsys):
    code = main(["compare", "--allocators", "glibc,/nonexistent/libnothing.so", "--repeat",
                 "2", "--", "true"])
    captured = capsys.readouterr()
    assert code == 0
    assert "| glibc |" in captured.out
    assert "| /nonexistent/libnothing.so | missing |" in captured.out
    assert "skipped" in captured.err and "make peers" in captured.err


def test_cli_compare_json_and_exit_1_on_a_failing_command(capsys):
    assert main(["compare", "--allocators", "glibc", "-n", "1", "--json", "--", "false"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["allocators"][0]["failures"]


def test_cli_help_for_run_and_compare(capsys):
    assert main(["run", "--help"]) == 0
    assert "LD_PRELOAD" in capsys.readouterr().out
    assert main(["compare", "--help"]) == 0
    assert "make peers" in capsys.readouterr().out


def test_option_keys_match_the_library():
    """preload.py checks option keys before a run; they must be the shim's own."""
    import re
    from helpers import ROOT
    with open(os.path.join(ROOT, "csrc", "preload", "preload.c"), encoding="utf-8") as f:
        shim = set(re.findall(r'\{ "(\w+)", PRM_', f.read())) | {"stats"}
    with open(os.path.join(ROOT, "csrc", "preload", "trace.c"), encoding="utf-8") as f:
        shim |= set(re.findall(r'memcmp\(key, "(\w+)"', f.read()))    # trace, profile, presize
    assert set(preload.OPTION_KEYS) == shim
