"""README.md's walk-through of the command line, run as written: every ```console block
marked `<!-- cli-walkthrough ... -->` is a session of `$ COMMAND` lines, each followed by
what it prints (stdout and stderr together). Each command runs in bash, in one scratch
directory for the whole session, with the virtualenv's bin on the PATH; its output
must match what the README shows, where `...` alone on a line stands for any number of
lines and `...` inside a line for any text.
"""
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

MARK = "<!-- cli-walkthrough"


def _sessions():
    """[(first line number, [(command, [expected lines])])] for each marked block."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    sessions = []
    for number, line in enumerate(lines):
        if not line.startswith(MARK):
            continue
        assert lines[number + 1] == "```console", f"README.md:{number + 2}: not a console block"
        steps, end = [], lines.index("```", number + 2)
        for text in lines[number + 2:end]:
            if text.startswith("$ "):
                steps.append((text[2:], []))
            else:
                assert steps, f"README.md:{number + 3}: output before any command"
                steps[-1][1].append(text)
        sessions.append((number + 1, steps))
    return sessions


def _pattern(expected):
    """A regular expression for the lines a command should print."""
    parts = []
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append("[^\n]*".join(re.escape(part) for part in line.rstrip().split("...")))
            parts.append(r"\n")
    return "".join(parts)


def test_the_walkthrough_is_found():
    sessions = _sessions()
    assert sessions and sum(len(steps) for _, steps in sessions) >= 10


def test_the_pattern_reads_ellipses_as_the_readme_means_them():
    pattern = _pattern(["a ... c", "...", "end"])
    assert re.fullmatch(pattern, "a b c\nx\ny\nend\n")
    assert re.fullmatch(pattern, "a  c\nend\n")
    assert not re.fullmatch(pattern, "a b c\nend\nmore\n")
    assert not re.fullmatch(pattern, "a b\nc\nend\n")


@pytest.mark.parametrize("line, steps", [pytest.param(line, steps, id=f"README.md:{line}")
                                         for line, steps in _sessions()])
def test_the_readme_command_line_walkthrough_runs_as_written(tmp_path, line, steps):
    bin_dir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONUNBUFFERED="1")    # stdout and stderr interleave as on a terminal
    env.pop("COLUMNS", None)
    for command, expected in steps:
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120)
        output = "".join(f"{text.rstrip()}\n" for text in proc.stdout.splitlines())
        assert re.fullmatch(_pattern(expected), output), (
            f"README.md (block at line {line}): `{command}` printed:\n{output}\n"
            "which does not match what the README shows:\n" + "\n".join(expected))
