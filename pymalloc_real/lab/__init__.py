"""The placement-policy lab: the classical placement policies of seed 001 on real mmapped
memory, beside our ptmalloc core and glibc's malloc, replayed over recorded traces.

The policies and the replay loop are C (``csrc/lab/``, through the cffi module), so a
replay measures the policy, not Python: the loop itself costs about 25 ns per operation
(see :attr:`ReplayResult.loop_ns_per_op`). This module packs traces, runs one policy
(:func:`replay`) or several (:func:`compare`, a table that prints and a chart of the
footprint over time), draws a policy's region at a chosen moment (:func:`picture`), and
gives direct access to one policy (:class:`Policy`) for experiments and tests.
``packing`` holds the vocabulary and packs traces, ``policy`` one policy, ``results``
what a replay gives, ``replayer`` runs replays and comparisons, ``picture`` draws a
region. This wing uses the core's C module and reads the trace wing's files.

    >>> from pymalloc_real import lab
    >>> trace = [(1, 0, 100), (1, 1, 200), (2, 0, 0), (1, 2, 50)]   # (op, id, size)
    >>> lab.replay(trace, "first_fit").failed
    0

A trace is anything with ``.packed()`` (24-byte records, see ``struct lab_op`` in
``csrc/lab/lab.h``) and ``.n_objects`` (pymalloc_real.trace's traces), or a list of
``(op, id, size)`` / ``(op, id, size, align_log2)`` tuples with op 1 malloc, 2 free,
3 realloc, 4 calloc, 5 memalign, or a text file (:func:`load`).
"""
from .packing import (CALLOC, FREE, MALLOC, MEMALIGN, POLICIES, REALLOC, REGION_POLICIES,
                      LabError, load, pack, parse_text)
from .picture import picture
from .policy import Block, CacheInfo, Policy
from .replayer import REAL_POLICIES, compare, replay
from .results import Comparison, ReplayResult, Sample

__all__ = ["POLICIES", "REGION_POLICIES", "REAL_POLICIES", "LabError", "Policy", "Block",
           "CacheInfo", "Sample", "ReplayResult", "Comparison", "replay", "compare",
           "picture", "load", "parse_text", "pack", "MALLOC", "FREE", "REALLOC", "CALLOC",
           "MEMALIGN"]
