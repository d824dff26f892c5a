"""The options our library reads from ``PYMALLOC_REAL_OPTIONS`` (README.md, "Options"):
the known keys, checked here so that a typo fails before the run rather than as a
warning inside it, and the text form of a dict of options.
"""

import os
import re

from ..errors import PymallocError

OPTIONS_VARIABLE = "PYMALLOC_REAL_OPTIONS"
# The keys csrc/preload/preload.c understands (README.md, "Options"); checked here so that a
# typo fails before the run rather than as a warning inside it.
OPTION_KEYS = ("mmap_threshold", "trim_threshold", "top_pad", "mxfast", "mmap_max",
               "arena_max", "arena_test", "perturb", "canary", "hardened", "check_action",
               "tcache_count", "tcache_grow",
               "stats", "trace", "stacks", "sample", "profile", "presize")


_LARGEST = (1 << 63) - 1
# The numeric keys' valid values, as csrc/preload/preload.c checks them (its option_keys
# table holds the same ranges): (lowest, highest, what to say).
OPTION_RANGES = {
    "mmap_threshold": (0, 32 << 20, "a size from 0 to 32M"),
    "trim_threshold": (-1, _LARGEST, "a size, or -1 for never"),
    "top_pad": (0, _LARGEST, "a size"),
    "mxfast": (0, 160, "a size from 0 to 160"),
    "mmap_max": (0, (1 << 31) - 1, "a count from 0 to 2147483647"),
    "arena_max": (1, _LARGEST, "a count of at least 1"),
    "arena_test": (1, _LARGEST, "a count of at least 1"),
    "perturb": (0, 255, "a byte from 0 to 255"),
    "canary": (0, 1, "0 or 1"),
    "hardened": (0, 1, "0 or 1"),
    "check_action": (0, 7, "M_CHECK_ACTION's bits, 0 to 7"),
    "tcache_count": (0, 65535, "a count from 0 to 65535"),
    "tcache_grow": (0, 1, "0 or 1"),
}
# Keys whose value is a file the library writes (%p becomes the pid). presize's file is
# left to the library, which says what is wrong with it (missing, or no heap_peak).
OUTPUT_KEYS = ("stats", "trace", "profile")
_NUMBER = re.compile(r"(-?)(0[xX][0-9a-fA-F]+|[0-9]+)([kKmMgG]?)")
_SHIFTS = {"": 0, "k": 10, "m": 20, "g": 30}


class OptionError(PymallocError, ValueError):
    """An unknown allocator, or options that do not apply (bad key, bad value, options
    for an allocator other than ours)."""


# ---- options ----------------------------------------------------------------------------------

def parse_options(options):
    """Options for our library as a dict of strings, from a dict or a
    ``"key=value,key=value"`` string (None: no options; spaces around keys and values
    are dropped). Raises OptionError, naming what is valid, for an unknown key, an empty
    value, a value holding a comma, a number out of its range (OPTION_RANGES) or a
    file the library could not write (stats, trace, profile: no such directory)."""
    if options is None:
        return {}
    if isinstance(options, str):
        pairs = [item.partition("=") for item in options.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise OptionError(f"options must be key=value pairs separated by commas: {options!r}")
        options = {key.strip(): value.strip() for key, _, value in pairs}
    parsed = {}
    for key, value in options.items():
        if key not in OPTION_KEYS:
            raise OptionError(f"unknown option {key!r}: the options are {', '.join(OPTION_KEYS)}")
        text = str(int(value)) if isinstance(value, bool) else str(value)
        if not text or "," in text:
            raise OptionError(f"option {key}: a value must be non-empty and without commas: "
                              f"{value!r}")
        _check_value(key, text)
        parsed[key] = text
    return parsed


def _check_value(key, text):
    if key in OPTION_RANGES:
        low, high, valid = OPTION_RANGES[key]
        match = _NUMBER.fullmatch(text)
        number = None
        if match:
            number = int(match[2], 0 if match[2][:2].lower() == "0x" else 10)
            number = (-number if match[1] else number) << _SHIFTS[match[3].lower()]
        if number is None or not low <= number <= high:
            raise OptionError(f"option {key}={text}: give {valid} (decimal or 0x hex, "
                              "K, M, G suffixes)")
    elif key in OUTPUT_KEYS:
        directory = os.path.dirname(os.path.abspath(text.replace("%p", "0")))
        if not os.path.isdir(directory):
            raise OptionError(f"option {key}={text}: the directory {directory} does not "
                              "exist; give a file in an existing directory")


def format_options(options):
    """The ``PYMALLOC_REAL_OPTIONS`` text for a dict of options."""
    return ",".join(f"{key}={value}" for key, value in options.items())
