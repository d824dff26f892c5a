"""Instructions per malloc+free pair, counted by callgrind (`bench --callgrind`): the
pairs workload at two -n values on each allocator; the difference cancels start-up and
exit, and the instructions executed in the pairs program itself are set apart, leaving
the allocator's. Exact, unlike wall time, on a shared machine.
"""


import collections
import os
import re
import shutil
import tempfile

from .. import preload
from .results import Callgrind
from .workloads import BenchError, _Counter, _read_result_line, available_workloads


# Instructions per malloc+free pair: pairs runs under callgrind at these two -n values
# and the difference cancels start-up and exit (quick or not: callgrind counts exactly).
CALLGRIND_OPS = (200_000, 1_000_000)


# ---- instructions per pair (callgrind) ---------------------------------------------------------

def _callgrind_workload(config, bench_dir):
    """The pairs workload for --callgrind; BenchError without valgrind or pairs."""
    if shutil.which("valgrind") is None:
        raise BenchError("--callgrind needs valgrind, which is not installed (Debian: "
                         "apt-get install valgrind)")
    found = [w for w in available_workloads(bench_dir) if w.name == "pairs"]
    if not found:
        raise BenchError(f"--callgrind needs the pairs workload: no "
                         f"{os.path.join(bench_dir, 'workloads', 'pairs.c')}")
    low, high = config.callgrind_ops
    if not 0 < low < high:
        raise BenchError("callgrind's two -n values must be positive and increasing")
    return found[0]


def measure_callgrind(executable, allocators, ops=CALLGRIND_OPS, seed=1, timeout=None,
                      counter=None):
    """Instructions per malloc+free pair of the pairs program ``executable`` on each
    allocator: callgrind counts every instruction of a run at each of the two -n values
    ``ops``, and (I2 - I1) / (pairs2 - pairs1) leaves only what the pairs cost, start-up
    and exit cancelled. Counting apart the instructions executed in the program itself
    (the loop around malloc and free) leaves the allocator's. One thread. Returns a
    Callgrind."""
    result = Callgrind(tuple(ops))
    counter = counter or _Counter(None, 0)
    with tempfile.TemporaryDirectory(prefix="pymalloc-real-callgrind-") as scratch:
        for index, name in enumerate(allocators):
            counts = []
            for n in ops:
                counter.step(f"callgrind: pairs -n {n} on {name}")
                # By position, not name: an allocator given as a path would otherwise
                # put the profile beside the library.
                count, problem = _callgrind_once(executable, name, n, seed, timeout,
                                                 os.path.join(scratch, f"{index}.{n}"))
                if problem:
                    result.failures.append(f"{name}, -n {n}: {problem}")
                    break
                counts.append(count)
            _per_pair(result, name, counts)
    return result


def _per_pair(result, name, counts):
    """Fill in one allocator's numbers from its (total, in program, pairs) counts."""
    result.instructions[name] = [total for total, _, _ in counts]
    result.in_program[name] = [program for _, program, _ in counts]
    result.per_pair[name] = result.per_pair_total[name] = None
    if len(counts) == 2 and counts[1][2] != counts[0][2]:
        (total1, program1, pairs1), (total2, program2, pairs2) = counts
        result.per_pair_total[name] = (total2 - total1) / (pairs2 - pairs1)
        result.per_pair[name] = ((total2 - program2) - (total1 - program1)) / (pairs2 - pairs1)


def _callgrind_once(executable, allocator, n, seed, timeout, out_file):
    """((instructions, of which in the program, pairs reported), None) for one run of
    pairs under callgrind, or (None, what went wrong)."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}",
               executable, "-n", str(n), "-t", "1", "-s", str(seed)]
    report = preload.run(command, allocator=allocator, stats=False, timeout=timeout,
                         input=b"")
    if not report.ok:
        tail = (report.stderr or "").strip().splitlines()[-1:] or [""]
        return None, f"exit status {report.shell_status} {tail[0][:160]}".strip()
    _, pairs, _, problem = _read_result_line(report)
    if problem:
        return None, problem
    try:
        by_object = callgrind_by_object(out_file)
    except FileNotFoundError:
        return None, f"callgrind wrote no profile {out_file}"
    program = sum(count for path, count in by_object.items()
                  if path and os.path.realpath(path) == os.path.realpath(executable))
    return (sum(by_object.values()), program, pairs), None


def callgrind_by_object(path):
    """Instructions executed in each object (program or shared library, by path) from
    a callgrind profile: the self cost of every function, summed by its ``ob=``. A
    cost line right after ``calls=`` is a call's inclusive cost, so it is skipped;
    names may be compressed, ``(id) name`` the first time and ``(id)`` after."""
    objects, current, call_cost, totals = {}, None, False, collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(("ob=", "cob=")):
                key, _, value = line.rstrip("\n").partition("=")
                match = re.fullmatch(r"\((\d+)\)(?: (.*))?", value)
                if match and match.group(2) is not None:
                    objects[match.group(1)] = match.group(2)
                name = objects.get(match.group(1), value) if match else value
                if key == "ob":
                    current = name
            elif line.startswith("calls="):
                call_cost = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                if call_cost:
                    call_cost = False
                    continue
                fields = line.split()
                totals[current] += int(fields[1]) if len(fields) > 1 else 0
    return totals
