"""Call sites for the report: the recorder's sites (``Recording.sites()``: each a
``CallSite`` with ``frames``, innermost first, each a ``Frame(address, function, file,
line, library)``, and ``calls``, ``bytes``, ``peak_bytes``, ``leaked_bytes``) ranked three
ways, named by the program's own frame, and folded into a tree for the icicle chart.

A site's *name* is its innermost frame that is not the allocator itself (malloc & co.,
C++'s operator new, or any frame in pymalloc_real's preload library): the function that
asked for the memory, with file:line when the debug information says, else its library.
"""


from dataclasses import dataclass
from typing import List, Optional, Tuple

# Frames of the allocator's own entry points, skipped when naming a site.
ALLOCATOR_FUNCTIONS = frozenset((
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "__libc_malloc", "__libc_calloc",
    "__libc_realloc", "__libc_memalign", "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t",
    "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
    "operator new", "operator new[]"))

METRICS = (("peak_bytes", "peak bytes"), ("calls", "calls"), ("leaked_bytes", "leaked bytes"))

TOP = 20                    # rows per table
TREE_SITES = 200            # the sites (by each metric) folded into the icicle


@dataclass(frozen=True)
class SiteRow:
    """One row of a table: the site's name, where, its numbers and its stack."""
    name: str
    where: str
    calls: int
    bytes: int
    peak_bytes: int
    leaked_bytes: int
    stack: Tuple[str, ...]          # frame labels, outermost first


def frame_label(frame):
    """``function`` (or the address), and where: ``file:line`` or the library."""
    function = getattr(frame, "function", None) or f"{getattr(frame, 'address', 0):#x}"
    return function, _where(frame)


def _where(frame):
    file, line = getattr(frame, "file", None), getattr(frame, "line", None)
    if file:
        return f"{file}:{line}" if line else str(file)
    library = getattr(frame, "library", None)
    return str(library) if library else ""


def _is_allocator(frame):
    function = getattr(frame, "function", None) or ""
    library = str(getattr(frame, "library", None) or "")
    return function in ALLOCATOR_FUNCTIONS or "_preload" in library.rsplit("/", 1)[-1]


def naming_frame(site):
    """The innermost frame of ``site`` that is not the allocator (the first one when
    every frame is)."""
    frames = tuple(getattr(site, "frames", ()) or ())
    for frame in frames:
        if not _is_allocator(frame):
            return frame
    return frames[0] if frames else None


def row_of(site):
    """The :class:`SiteRow` of a recorder's CallSite."""
    frame = naming_frame(site)
    name, where = frame_label(frame) if frame is not None else ("(no stack)", "")
    frames = [f for f in (getattr(site, "frames", ()) or ()) if not _is_allocator(f)]
    stack = tuple(frame_label(f)[0] for f in reversed(frames)) or (name,)
    return SiteRow(name, where, int(site.calls), int(site.bytes), int(site.peak_bytes),
                   int(site.leaked_bytes), stack)


def rows(sites):
    """Every site as a :class:`SiteRow`."""
    return [row_of(site) for site in sites]


def ranked(site_rows, metric, top=TOP):
    """The ``top`` rows by ``metric`` (an attribute of SiteRow), zeros left out."""
    chosen = [row for row in site_rows if getattr(row, metric) > 0]
    return sorted(chosen, key=lambda row: (-getattr(row, metric), row.name))[:top]


def top_site(sites, metric="peak_bytes") -> Optional[SiteRow]:
    """The first site by ``metric``, or None."""
    found = ranked(rows(sites), metric, 1)
    return found[0] if found else None


def tree(site_rows, metric, limit=TREE_SITES):
    """The icicle's nodes for ``metric``: (ids, labels, parents, values), each node a
    path of frames from the outermost (its id a number), its value the sum over the
    sites under it (so ``branchvalues="total"`` holds). Only the ``limit`` largest sites
    are folded in."""
    number = {}                 # a node's path of frames -> its short id (the page's size)
    labels, parents, values = [], [], []
    for row in ranked(site_rows, metric, limit):
        path, parent = (), ""
        for label in row.stack:
            path += (label,)
            node = number.get(path)
            if node is None:
                node = number[path] = len(labels)
                labels.append(label)
                parents.append(parent)
                values.append(0)
            values[node] += getattr(row, metric)
            parent = str(node)
    return [str(i) for i in range(len(labels))], labels, parents, values


def as_dicts(site_rows: List[SiteRow]):
    """Rows as plain data (JSON)."""
    return [dict(name=r.name, where=r.where, calls=r.calls, bytes=r.bytes,
                 peak_bytes=r.peak_bytes, leaked_bytes=r.leaked_bytes, stack=list(r.stack))
            for r in site_rows]
