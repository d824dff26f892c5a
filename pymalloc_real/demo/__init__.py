"""The demo: the seed articles replayed on real memory (``pymalloc-real demo``).

``steps`` runs the seven steps (``pages`` holds the three about pages), ``records`` says
what a step's outcome is, ``walkthrough`` is the seeds' malloc walk-through, ``glibc``
keeps the interpreter's own malloc out of the way, and ``pictures`` draws each step
(matplotlib, imported only for ``--plot``). This wing uses the core API and the kernel
views; nothing here prints (the command line does).
"""
from .records import AGREES, DISAGREES, FAULT_SLACK, NOT_APPLICABLE, Chart, Step
from .steps import STEPS, run

__all__ = ["Step", "Chart", "STEPS", "run", "AGREES", "DISAGREES", "NOT_APPLICABLE",
           "FAULT_SLACK"]
