"""Replaying traces: one policy (``replay``) or several (``compare``); the real
allocators (our ptmalloc core, glibc) replay in a fresh process, glibc in a new thread's
arena, so that nothing the interpreter freed before hides in the footprint.
"""


import os

from .packing import POLICIES, LabError, _Packed, pack
from .policy import Policy
from .results import Comparison


def _baseline(packed):
    """ns per op of the loop alone: the null policy over the same ops, no checks."""
    with Policy("null") as null:
        return null.replay(packed, verify=False, sample_every=max(1, packed.n_ops)).ns_per_op


def replay(trace, policy, region_size=None, verify=True, sample_every=None, baseline=True,
           time_limit=None, **params):
    """Replay ``trace`` on a fresh ``policy`` (a name of :data:`POLICIES`) and return a
    :class:`ReplayResult`. ``verify`` writes and checks a pattern in every block (off for
    timing); ``sample_every`` ops between points of the series (default: 400 points);
    ``baseline`` also times the null policy to give the loop's own cost per op;
    ``time_limit`` (seconds) stops a slow policy part way (``timed_out``). Other
    keywords (min_block, pool_size, block_size, slab_size) go to :class:`Policy`."""
    packed = pack(trace)
    if policy in REAL_POLICIES and not os.environ.get(_CHILD):
        result = _replay_in_fresh_process(packed, policy, verify, sample_every, time_limit)
    else:
        with Policy(policy, region_size=region_size, **params) as p:
            result = p.replay(packed, verify=verify, sample_every=sample_every,
                              time_limit=time_limit)
    if baseline:
        result.loop_ns_per_op = _baseline(packed)
    return result


# The real allocators serve this interpreter too: in this process their footprint would
# be blurred by what they already hold free (and reuse first). In a fresh interpreter our
# core is untouched, and a new thread there gets a new, empty glibc arena.
REAL_POLICIES = ("ptmalloc", "glibc")


_CHILD = "PYMALLOC_REAL_LAB_CHILD"


def _replay_in_fresh_process(packed, policy, verify, sample_every, time_limit):
    import pickle
    import subprocess
    import sys
    import tempfile
    with tempfile.NamedTemporaryFile(prefix="pymalloc-real-lab-", suffix=".ops") as ops:
        ops.write(packed.data)
        ops.flush()
        request = pickle.dumps((ops.name, packed.n_ops, packed.n_objects, policy, verify,
                                sample_every, time_limit))
        proc = subprocess.run([sys.executable, "-c", "from pymalloc_real.lab.replayer import _child; _child()"],
                              input=request, capture_output=True,
                              env=dict(os.environ, **{_CHILD: "1"}))
    if proc.returncode != 0:
        raise LabError(f"replaying under {policy} in a fresh process failed (exit "
                       f"{proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}")
    return pickle.loads(proc.stdout)


def _child():
    """The fresh process's side of _replay_in_fresh_process: request on stdin (pickled),
    the ReplayResult on stdout (pickled)."""
    import pickle
    import sys
    path, n_ops, n_objects, policy, verify, sample_every, time_limit = pickle.loads(sys.stdin.buffer.read())
    with open(path, "rb") as f:
        packed = _Packed(f.read(), n_ops, n_objects)

    def run():
        with Policy(policy) as p:
            box.append(p.replay(packed, verify=verify, sample_every=sample_every,
                                time_limit=time_limit))

    # A new thread gets a new glibc arena: empty, so nothing the interpreter freed is
    # reused by the trace and hidden from its footprint. (Our core is untouched here.)
    import threading
    box = []
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if not box:
        raise SystemExit(1)
    sys.stdout.buffer.write(pickle.dumps(box[0]))


def compare(trace, policies=None, region_size=None, verify=True, sample_every=None,
            description="", time_limit=None, **params):
    """Replay ``trace`` under each of ``policies`` (default: all) and return a
    :class:`Comparison`. ``time_limit`` (seconds per policy) stops the slow ones (the
    fits and the minimal allocator are O(free blocks) per op) part way."""
    packed = pack(trace)
    names = list(POLICIES if policies is None else policies)
    for name in names:
        if name not in POLICIES:
            raise LabError(f"unknown policy {name!r}; the policies are {', '.join(POLICIES)}")
    loop = _baseline(packed)
    results = []
    for name in names:
        mine = {k: v for k, v in params.items() if v is not None}
        result = replay(packed, name, region_size=region_size, verify=verify,
                        sample_every=sample_every, baseline=False, time_limit=time_limit,
                        **mine)
        result.loop_ns_per_op = loop
        results.append(result)
    return Comparison(results, packed.n_ops, loop, description)
