"""The options our library reads from ``PYMALLOC_REAL_OPTIONS`` (README.md, "Options"):
the known keys, checked here so that a typo fails before the run rather than as a
warning inside it, and the text form of a dict of options.
"""

from ..errors import PymallocError

OPTIONS_VARIABLE = "PYMALLOC_REAL_OPTIONS"
# The keys csrc/preload/preload.c understands (README.md, "Options"); checked here so that a
# typo fails before the run rather than as a warning inside it.
OPTION_KEYS = ("mmap_threshold", "trim_threshold", "top_pad", "mxfast", "mmap_max",
               "arena_max", "arena_test", "perturb", "canary", "hardened", "check_action", "tcache_count",
               "stats", "trace", "profile", "presize")


class OptionError(PymallocError, ValueError):
    """An unknown allocator, or options that do not apply (bad key, bad value, options
    for an allocator other than ours)."""


# ---- options ----------------------------------------------------------------------------------

def parse_options(options):
    """Options for our library as a dict of strings, from a dict or a
    ``"key=value,key=value"`` string (None: no options). Raises OptionError for an
    unknown key, an empty value or a value holding a comma."""
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
        parsed[key] = text
    return parsed


def format_options(options):
    """The ``PYMALLOC_REAL_OPTIONS`` text for a dict of options."""
    return ",".join(f"{key}={value}" for key, value in options.items())
