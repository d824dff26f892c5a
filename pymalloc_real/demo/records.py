"""The demo's records: a step's outcome (``Step``, ``Chart``), the verdicts, and the
scene a step's experiment photographs at its telling moment. Shared by the steps
(steps.py, pages.py) and read by whoever presents them (the command line, pictures.py).
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import introspect
from ..introspect import Chunk
from ..kernel.space import Band, address_space
from .walkthrough import (Operation, _chunk_dicts)
from ..reprs import readable


__all__ = ["Step", "Chart", "AGREES", "DISAGREES", "NOT_APPLICABLE", "FAULT_SLACK"]

AGREES, DISAGREES, NOT_APPLICABLE = "agrees", "DISAGREES", "n/a"

# Between two readings of the fault counters the interpreter runs a little bytecode and
# builds the objects that hold the readings; it may fault a few pages of its own (a new
# arena page, a stack page). A count within this many faults of what the experiment
# predicts counts as agreeing. The experiments touch hundreds to thousands of pages, so
# this slack cannot hide a real disagreement.
FAULT_SLACK = 16


# ---- records ------------------------------------------------------------------------------

@readable
@dataclass(frozen=True)
class Chart:
    """Counts a step measured, for a small chart: one value per category and series
    ("bar", "line"), or one per index ("scatter": ``categories`` is empty)."""
    kind: str
    title: str
    xlabel: str
    ylabel: str
    categories: List[str]
    series: Dict[str, List[float]]


@readable
@dataclass(frozen=True)
class Step:
    """One of the demo's seven steps: the prediction, the verdict and its reason, what
    was measured, and the picture at the step's telling moment (``moment``)."""
    number: int
    title: str
    slug: str                       # names the step's picture: step<number>_<slug>.png
    prediction: str
    verdict: str                    # AGREES, DISAGREES or NOT_APPLICABLE
    reason: str                     # the observations that decided it (or why n/a)
    observations: List[Tuple[str, str]]     # (label, text) lines for people
    measures: Dict[str, object]     # the numbers, for programs
    chart: Optional[Chart]
    moment: str                     # when ``space`` and ``chunks`` were taken
    space: List[Band]
    chunks: List[Chunk]
    names: Dict[str, int]           # block name -> address, to label chunks
    operations: List[Operation]     # step 1's walk-through; empty otherwise
    break_before: int               # the program break when the step started
    break_after: int                # and when it ended
    minor_faults: int               # faults over the whole step, the interpreter's own
    major_faults: int               # work included
    seconds: float

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["chunks"] = _chunk_dicts(self.chunks)
        out["operations"] = [op.as_dict() for op in self.operations]
        out["observations"] = [list(pair) for pair in self.observations]
        return out


@dataclass
class _Outcome:
    """What a step's experiment returns to the runner."""
    prediction: str
    verdict: str
    reason: str
    observations: List[Tuple[str, str]] = field(default_factory=list)
    measures: Dict[str, object] = field(default_factory=dict)
    chart: Optional[Chart] = None
    operations: List[Operation] = field(default_factory=list)


class _Scene:
    """The picture of a step: the experiment calls ``snapshot`` at its telling moment,
    while its blocks are alive."""

    def __init__(self):
        self.moment, self.space, self.chunks, self.names = "", [], [], {}

    def snapshot(self, moment, marks=(), names=None, regions=None):
        self.moment = moment
        self.chunks = introspect.chunks()
        self.space = address_space(marks, regions)
        self.names = dict(names or {})


def _verdict(checks, agreed):
    """(verdict, reason): DISAGREES with the first failed check's text, else AGREES with
    ``agreed``. ``checks`` is a list of (ok, what was observed instead)."""
    for ok, failure in checks:
        if not ok:
            return DISAGREES, failure
    return AGREES, agreed
