"""Running programs on an allocator (LD_PRELOAD): ``run`` one command and report what it
cost, ``compare`` several allocators side by side, find our library (``library_path``)
and the peers', and check our library's options.

``libraries`` knows the allocators and where their libraries lie, ``options`` the keys
our library reads from ``PYMALLOC_REAL_OPTIONS``, ``runner`` starts, reaps and measures
one run, ``comparison`` plans interleaved repeats and summarises them. This wing uses
nothing else of the package but its errors; nothing here prints.
"""
from .comparison import AllocatorResult, Comparison, Metric, Spread, interleaved_plan
from .comparison import compare
from .libraries import (ALLOCATORS, GLIBC, OURS, PEERS, Allocator, LibraryMissing, Peer,
                        PeerMissing, is_ours, library_directories, library_path, peer_path,
                        resolve)
from .options import OPTION_KEYS, OPTIONS_VARIABLE, OptionError, format_options, parse_options
from .runner import RunReport, run

__all__ = ["run", "compare", "RunReport", "Comparison", "AllocatorResult", "Metric",
           "Spread", "interleaved_plan", "library_path", "library_directories", "peer_path",
           "resolve", "is_ours", "Allocator", "Peer", "PEERS", "ALLOCATORS", "GLIBC", "OURS",
           "LibraryMissing", "PeerMissing", "OptionError", "OPTION_KEYS", "OPTIONS_VARIABLE",
           "parse_options", "format_options"]
