"""Short, readable reprs for the package's dataclasses: addresses in hex, long strings
and big containers summarised (their size and first few items), nested records cut
short, the whole kept to a few lines. ``@readable`` puts it on a dataclass;
``short_repr`` is the function itself.

    >>> prm.segments()[0]
    Segment(start=0x556332320000, end=0x556332341000, kind='brk', serial=0, arena=0, holds_top=True)
    >>> prm.stats()
    HeapStats(arena=135168, ordblks=4, smblks=1, ..., segments_opened=0, ... 30 more fields)
"""
import dataclasses

__all__ = ["readable", "short_repr", "ADDRESS_FIELDS"]

# Fields that hold an address wherever they appear (only ints are shown in hex: a
# `start` that is a time stays a float).
ADDRESS_FIELDS = frozenset({
    "address", "start", "end", "mapping_start", "mapping_end", "top", "brk", "pointer",
    "virtual", "text", "data", "bss", "stack", "mapping", "heap_break", "span_start",
    "break_before", "break_after",
})

BUDGET = 320            # characters of a top-level repr before "... N more fields"
NESTED_BUDGET = 90      # the same for a record inside a field
FIRST_ITEMS = 3         # items of a container shown before "... N items"
STRING_CHARS = 80       # characters of a string shown before its length


def _value(name, value, depth, addresses):
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return f"{value:#x}" if name in addresses else repr(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        if len(value) <= STRING_CHARS:
            return repr(value)
        return f"{value[:STRING_CHARS]!r}... ({len(value):,} chars)"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value):,} bytes>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return short_repr(value, depth + 1)
    if isinstance(value, dict):
        if depth >= 1 and value:
            return f"{{... {len(value):,} items}}"
        # (a key is no field name: {'stack': 0} is a size, not an address)
        items = [f"{_value('', k, depth + 1, addresses)}: {_value('', v, depth + 1, addresses)}"
                 for k, v in list(value.items())[:FIRST_ITEMS]]
        more = f", ... {len(value):,} items" if len(value) > FIRST_ITEMS else ""
        return "{" + ", ".join(items) + more + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        opening, closing = ("[", "]") if isinstance(value, list) else \
            ("(", ")") if isinstance(value, tuple) else ("{", "}")
        if depth >= 1 and len(value) > FIRST_ITEMS:
            return f"{opening}... {len(value):,} items{closing}"
        items = [_value(name, item, depth + 1, addresses) for item in list(value)[:FIRST_ITEMS]]
        more = f", ... {len(value):,} items" if len(value) > FIRST_ITEMS else ""
        return opening + ", ".join(items) + more + closing
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def short_repr(obj, depth=0, addresses=None):
    """``Class(field=value, ...)`` within BUDGET characters (NESTED_BUDGET when nested);
    the fields that do not fit are counted, not shown."""
    addresses = ADDRESS_FIELDS | set(addresses or getattr(type(obj), "_repr_addresses", ()))
    fields = [f for f in dataclasses.fields(obj) if f.repr]
    budget = BUDGET if depth == 0 else NESTED_BUDGET
    parts, used = [], len(type(obj).__name__) + 2
    for shown, field in enumerate(fields):
        part = f"{field.name}={_value(field.name, getattr(obj, field.name), depth, addresses)}"
        if parts and used + len(part) > budget:
            parts.append(f"... {len(fields) - shown} more fields")
            break
        parts.append(part)
        used += len(part) + 2
    return f"{type(obj).__name__}({', '.join(parts)})"


def readable(cls=None, *, addresses=()):
    """Class decorator: give a dataclass ``short_repr`` as its repr (``addresses``: more
    field names to show in hex). Put it above ``@dataclass``."""
    def decorate(cls):
        cls._repr_addresses = frozenset(addresses)
        cls.__repr__ = lambda self: short_repr(self)
        return cls
    return decorate(cls) if cls is not None else decorate
