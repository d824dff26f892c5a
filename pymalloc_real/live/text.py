"""The live view as text for people: ``heap_text`` (the chunk walk, the bins and the
ledger of one snapshot: ``pymalloc-real heap PID``) and ``top_text`` (the counters of one
snapshot, with rates against the one before: ``pymalloc-real top PID``). Both return
strings; the command line prints them. They take the dataclasses of
``pymalloc_real.introspect``, so they would render this process's heap as well.
"""
import textwrap

from ..kernel.space import size_text

__all__ = ["heap_text", "top_text", "chunk_table", "bins_text", "naming_text"]

RUN = 3             # identical neighbours (size, state, bin) shown as one line from here
WIDTH = 100         # as the command line: everything fits a terminal this wide


def _fit(lines, indent=10):
    """Lines longer than WIDTH wrapped, continuations indented."""
    out = []
    for line in lines:
        if len(line) <= WIDTH:
            out.append(line)
        else:
            lead = len(line) - len(line.lstrip())
            out += textwrap.wrap(line, WIDTH, subsequent_indent=" " * (lead + indent),
                                 break_on_hyphens=False)
    return out


def _state(chunk):
    if chunk.kind in ("top", "fence"):
        return chunk.kind
    return "in use" if chunk.in_use else "free"


def _bin(chunk):
    return "" if chunk.bin is None else f"{chunk.bin}[{chunk.bin_index}]"


def chunk_table(chunks, every_chunk=False, indent="    "):
    """Lines of a chunk walk: address, size, state, P/M/A flags, bin; runs of identical
    neighbours collapse into one line unless `every_chunk`."""
    lines = [f"{indent}{'address':>14}  {'size':>11}  {'state':<7} {'flags':<5} bin"]
    i = 0
    while i < len(chunks):
        c = chunks[i]
        j = i + 1
        if not every_chunk:
            while j < len(chunks) and (chunks[j].size, _state(chunks[j]), chunks[j].bin,
                                       chunks[j].flags) == (c.size, _state(c), c.bin, c.flags):
                j += 1
            if j - i < RUN:
                j = i + 1
        extra = ""
        if c.kind == "mmapped":
            extra = f"mapping {c.mapping_start:#x}-{c.mapping_end:#x} " \
                    f"{size_text(c.mapping_end - c.mapping_start)}"
        if j - i > 1:
            extra = f"x {j - i}, to {chunks[j - 1].address:#x} " \
                    f"({(j - i) * c.size:,} bytes)"
        bin_name = _bin(c) if j - i == 1 else (f"{c.bin}" if c.bin else "")
        lines.append(f"{indent}{c.address:#14x}  {c.size:11,}  {_state(c):<7} {c.flags:<5} "
                     f"{bin_name:<10} {extra}".rstrip())
        i = j
    return lines


def bins_text(bins, indent="  ", most=4):
    """One line per non-empty bin: its chunks' count and bytes, the first few addresses."""
    lines = []

    def line(name, entries):
        total = sum(e.size for e in entries)
        shown = ", ".join(f"{e.address:#x}" + ("" if name.startswith("fast") else f" ({e.size:,})")
                          for e in entries[:most])
        more = f", ... {len(entries) - most} more" if len(entries) > most else ""
        lines.append(f"{indent}{name:<14} {len(entries):5} chunk{'s' if len(entries) != 1 else ' '} "
                     f"{total:11,} bytes: {shown}{more}")

    for index in sorted(bins.fast):
        line(f"fast[{index}] {bins.fast[index][0].size}", bins.fast[index])
    if bins.unsorted:
        line("unsorted", bins.unsorted)
    for index in sorted(bins.small):
        line(f"small[{index}]", bins.small[index])
    for index in sorted(bins.large):
        line(f"large[{index}]", bins.large[index])
    return lines or [f"{indent}(every bin is empty)"]


def naming_text(counters):
    """What became of naming our mappings (PR_SET_VMA_ANON_NAME), from the kernel
    layer's counters."""
    if counters.get("mappings_named"):
        return (f"named mappings: {counters['mappings_named']:,} named "
                "[anon:pymalloc_real ...] in /proc/PID/maps")
    if counters.get("naming_refused"):
        return ("named mappings: refused by the kernel (EINVAL: no CONFIG_ANON_VMA_NAME, "
                "or Linux < 5.17)")
    return "named mappings: nothing to name yet"


def heap_text(view, every_chunk=False):
    """The heap of one LiveSnapshot: arenas with their segments' chunk walks, the mmapped
    chunks, the bins and the ledger."""
    process = view.process
    chunks, bins, arenas, segments = view.chunks(), view.bins(), view.arenas(), view.segments()
    mapped = [c for c in chunks if c.kind == "mmapped"]
    build = "LD_PRELOAD library" if process.directory.preload else "Python extension"
    out = [f"process {process.pid} ({process.command}) on pymalloc_real's {build}:",
           f"  {process.library}",
           f"{len(arenas)} arena{'s' * (len(arenas) != 1)}, {len(segments)} heap segment"
           f"{'s' * (len(segments) != 1)}, {len(mapped)} mmapped chunk{'s' * (len(mapped) != 1)}; "
           f"copied in {sum(a.copies for a in view.raw.arenas)} tr"
           f"{'ies' if sum(a.copies for a in view.raw.arenas) != 1 else 'y'} of "
           f"{len(view.raw.arenas)} arena lock{'s' * (len(view.raw.arenas) != 1)}"]
    out.append(naming_text(view.raw.os_counters))
    for arena in arenas:
        out.append("")
        out.append(f"arena {arena.index}{' (main)' if arena.index == 0 else ''}: "
                   f"{arena.system_bytes:,} bytes from the OS, {arena.in_use_bytes:,} in use "
                   f"({arena.in_use_chunks:,} chunks), {arena.free_bytes:,} free, top "
                   f"{arena.top_size:,}" + (" CORRUPT" if arena.corrupt else ""))
        for seg in (s for s in segments if s.arena == arena.index):
            here = [c for c in chunks if c.arena == arena.index and c.segment == seg.serial
                    and c.kind != "mmapped"]
            out.append(f"  segment {seg.serial} ({seg.kind}) {seg.start:#x}-{seg.end:#x} "
                       f"{size_text(seg.size)}, {len(here)} chunks")
            out += chunk_table(here, every_chunk)
    out.append("")
    out.append(f"mmapped chunks: {len(mapped)}")
    if mapped:
        out += chunk_table(mapped, True)
    out.append("")
    out.append("bins")
    out += bins_text(bins)
    out.append("")
    out.append("ledger")
    out += ["  " + line for line in view.ledger().as_text().splitlines()]
    return "\n".join(_fit(out))


def _rate(now, before, seconds):
    if before is None or seconds <= 0:
        return ""
    return f" ({(now - before) / seconds:+,.0f}/s)"


def top_text(view, previous=None, sample=1, interval=None):
    """The counters of one LiveSnapshot, rates against `previous` (the LiveSnapshot
    before, or None)."""
    import time
    process, s, k = view.process, view.stats(), view.counters
    seconds = view.taken - previous.taken if previous is not None else 0
    ps = previous.stats() if previous is not None else None
    pk = previous.counters if previous is not None else None
    heap_in_use = sum(a.in_use_bytes for a in view.arenas())
    mapped_in_use = s.in_use_bytes - heap_in_use
    clock = time.strftime("%H:%M:%S", time.localtime(view.taken))
    every = f", every {interval:g} s" if interval else ""
    out = [f"pymalloc-real top: process {process.pid} ({process.command}) at {clock}{every}, "
           f"sample {sample}",
           "",
           f"in use    {s.in_use_bytes:>14,} bytes in {s.in_use_chunks:,} chunks"
           f"{_rate(s.in_use_bytes, ps and ps.in_use_bytes, seconds)}: heap {heap_in_use:,}, "
           f"mmapped {mapped_in_use:,}",
           f"heap      {s.arena:>14,} bytes from the OS in {s.segments} segment"
           f"{'s' * (s.segments != 1)} of {s.arenas} arena{'s' * (s.arenas != 1)}",
           f"free      {s.fordblks:>14,} bytes in the heap: top {s.keepcost:,}, fast bins "
           f"{s.fsmblks:,}, bins {s.fordblks - s.keepcost - s.fsmblks:,}",
           f"mapped    {s.hblkhd:>14,} bytes in {s.hblks} mmapped chunk{'s' * (s.hblks != 1)} "
           f"(peak {s.max_hblkhd:,})",
           f"RSS       {k.rss:>14,} bytes ({size_text(k.rss)}); page faults {k.minor_faults:,} minor"
           f"{_rate(k.minor_faults, pk and pk.minor_faults, seconds)}, {k.major_faults:,} major",
           f"kernel    brk {s.brk_moves:,} moves, mmap {s.mmap_calls:,}, munmap {s.munmap_calls:,}, "
           f"mremap {s.mremap_calls:,}, MADV_DONTNEED {s.discard_calls:,}; trims {s.trims:,}"]
    report = view.report
    if report is None:
        out.append("calls     not counted: start the program with "
                   "PYMALLOC_REAL_OPTIONS=stats=PATH to count them")
    else:
        before = previous.report["calls"] if previous is not None and previous.report else {}
        calls = ", ".join(f"{name} {count:,}{_rate(count, before.get(name), seconds)}"
                          for name, count in report["calls"].items() if count)
        out.append(f"calls     {calls or 'none yet'}")
        sizes = ", ".join(f"{key} {count:,}" for key, count in view.requests_by_size().items())
        out.append(f"requests  by size: {sizes or 'none yet'}")
    out.append("")
    out.append(f"{'size class':<14} {'chunks in use':>14} {'bytes':>16}")
    for c in view.size_classes():
        name = "mmapped" if c.limit == 0 else f"<= {c.limit:,}"
        out.append(f"{name:<14} {c.chunks:>14,} {c.bytes:>16,}")
    out.append("")
    out.append(f"{'arena':<6} {'threads':>7} {'from the OS':>14} {'in use':>14} {'chunks':>9} "
               f"{'free':>14} {'top':>12} {'segments':>8}")
    for a in view.arenas():
        out.append(f"{a.index:<6} {a.attached_threads:>7} {a.system_bytes:>14,} {a.in_use_bytes:>14,} "
                   f"{a.in_use_chunks:>9,} {a.free_bytes:>14,} {a.top_size:>12,} {a.segments:>8}"
                   + (" CORRUPT" if a.corrupt else ""))
    return "\n".join(_fit(out))
