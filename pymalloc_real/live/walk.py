"""The walks of csrc/core/stats.c, done in Python over a Snapshot of another process:
chunks, bins, arenas, segments, statistics and the ledger, as the same dataclasses
``pymalloc_real.introspect`` gives for this process, so whatever shows one can show the
other. Residency comes from the process's pagemap (taken with the snapshot) instead of
mincore, which only sees the calling process.
"""
import itertools

from ..introspect import (Arena, BinEntry, Bins, Chunk, HeapStats, Ledger, Segment,
                          _struct_fields)
from ..errors import HeapCorruption

__all__ = ["Walker"]

FLAG_BITS = 7
PREV_INUSE, IS_MMAPPED, NON_MAIN = 1, 2, 4
_SEGMENT_KINDS = {0: "brk", 1: "mmap", 2: "heap"}


class Walker:
    """Walks one Snapshot (taken with its Directory)."""

    def __init__(self, snapshot, directory):
        self.s, self.d = snapshot, directory
        self.chunk_size = directory.size("prm_chunk")
        self.fd = directory.offset("prm_chunk.fd")
        self.size_word = directory.offset("prm_chunk.size")
        self.hardened = directory.fields.get("const.PRM_HARDENING", (1, 0))[0]
        self._cache = {}

    # ---- one arena ---------------------------------------------------------------------

    def _word(self, arena, member, index=0):
        offset = self.d.offset(f"prm_arena.{member}") + 8 * index
        return int.from_bytes(arena.raw[offset:offset + 8], "little")

    def _size(self, address):
        return self.s.u64(address + self.size_word) & ~FLAG_BITS

    def _heap_chunks(self, arena):
        """[(segment, address, size, kind, tagged_in_use, flag bits)] of every chunk of
        the arena, newest segment first, as prmi_walk_heap visits them; walked once per
        snapshot, straight over the segments' bytes (a heap has millions of chunks)."""
        key = ("chunks", arena.address)
        if key in self._cache:
            return self._cache[key]
        top = arena.fields["top"]
        fence = self.d.constant("PRM_FENCE_SIZE")
        minsize = self.d.constant("PRM_MINSIZE")
        out = []
        append = out.append
        for n, seg in enumerate(arena.segments):
            holds_top = n == 0 and top != 0
            end = seg.end
            # The segment as 64-bit words from its first 8-aligned address: indexing a
            # memoryview is the fastest word read Python has.
            shift = -seg.raw_start % 8
            words = memoryview(seg.data)[shift:len(seg.data) - (len(seg.data) - shift) % 8].cast("Q")
            origin = seg.raw_start + shift - self.size_word       # word (p - origin) >> 3: p's size
            p = seg.first
            if not seg.raw_start <= p <= end - 16 or p % 16:
                raise self._damaged(arena, f"segment {seg.serial} has its first chunk outside it")
            head = words[(p - origin) >> 3]
            while p < end:
                size = head & ~FLAG_BITS
                if p == top:
                    if not holds_top or p + size != end:
                        raise self._damaged(arena, "the top chunk does not end the newest segment")
                    append((seg, p, size, "top", False, head & FLAG_BITS))
                    p = end
                    break
                if size == fence and not holds_top:
                    append((seg, p, size, "fence", True, head & FLAG_BITS))
                    p += size
                    if p < end:
                        head = words[(p - origin) >> 3]
                    continue
                if size < minsize or size % 16 or size >= end - p:
                    raise self._damaged(arena, f"chunk {p:#x} has size {size:#x}, which leads "
                                               f"outside its segment (ends {end:#x})")
                following = words[(p + size - origin) >> 3]
                append((seg, p, size, "chunk", bool(following & PREV_INUSE), head & FLAG_BITS))
                p += size
                head = following
            if p != end:
                raise self._damaged(arena, "the chunks of a segment do not end at the segment's end")
        self._cache[key] = out
        return out

    def _damaged(self, arena, why):
        return HeapCorruption(f"the heap of process {self.s.pid} could not be walked "
                              f"(arena {arena.fields['index']})", why)

    def _arena_bins(self, arena):
        """BinEntry of every chunk in the arena's fast bins and bins, bins in order
        (walked once per snapshot)."""
        key = ("bins", arena.address)
        if key not in self._cache:
            self._cache[key] = self._walk_bins(arena)
        return self._cache[key]

    def _walk_bins(self, arena):
        out = []
        index = arena.fields["index"]
        limit = arena.fields["system_bytes"] // self.d.constant("PRM_MINSIZE") + 1
        for i in range(self.d.constant("PRM_NFASTBINS")):
            p, steps = self._word(arena, "fastbins", i), 0
            while p:
                steps += 1
                if steps > limit:
                    raise self._damaged(arena, f"fast bin {i} is a cycle")
                out.append(BinEntry("fast", i, p, self._size(p), index))
                stored = self.s.u64(p + self.fd)
                p = ((p + self.fd) >> 12) ^ stored if self.hardened else stored
        bins = self.d.offset("prm_arena.bins")
        first_large = self.d.constant("PRM_FIRST_LARGE_BIN")
        for i in range(self.d.constant("PRM_UNSORTED_BIN"), self.d.constant("PRM_LAST_BIN") + 1):
            head = arena.address + bins + i * self.chunk_size
            kind = "unsorted" if i == self.d.constant("PRM_UNSORTED_BIN") else \
                "small" if i < first_large else "large"
            offset = bins + i * self.chunk_size + self.fd
            p, steps = int.from_bytes(arena.raw[offset:offset + 8], "little"), 0
            while p != head:
                steps += 1
                if steps > limit:
                    raise self._damaged(arena, f"bin {i} is a cycle")
                out.append(BinEntry(kind, i, p, self._size(p), index))
                p = self.s.u64(p + self.fd)
        return out

    def _remote_pending(self, arena):
        """Chunks other threads left on the arena's remote-free stack (pushed without
        the lock, so counted as far as the copy holds a plausible stack)."""
        key = ~(arena.address + self.d.offset("prm_arena.remote_head")) & (2 ** 64 - 1)
        count, e = 0, arena.fields["remote_head"]
        try:
            while e and e % 16 == 0 and self.s.u64(e + 8) == key and count < 1 << 32:
                count += 1
                e = self.s.u64(e)
        except KeyError:
            pass
        return count

    # ---- what introspect gives --------------------------------------------------------

    def bins(self):
        return Bins.from_entries(e for arena in self.s.arenas for e in self._arena_bins(arena))

    def chunks(self):
        binned = {e.address: e for e in self.bins().entries()}
        out = []
        for arena in self.s.arenas:
            for seg, p, size, kind, tagged, flags in self._heap_chunks(arena):
                entry = binned.get(p)
                in_use = tagged and kind == "chunk" and (entry is None or entry.kind != "fast")
                out.append(Chunk(p, size, kind, in_use, bool(flags & PREV_INUSE),
                                 bool(flags & IS_MMAPPED), bool(flags & NON_MAIN),
                                 entry.kind if entry else None, entry.index if entry else None,
                                 arena.fields["index"], seg.serial))
        for m in self.s.mapped:
            flags = m.size_word & FLAG_BITS
            out.append(Chunk(m.chunk, m.size_word & ~FLAG_BITS, "mmapped", True,
                             bool(flags & PREV_INUSE), bool(flags & IS_MMAPPED),
                             bool(flags & NON_MAIN), None, None, -1, -1, m.header,
                             m.header + m.length))
        out.sort(key=lambda c: (c.kind == "mmapped", c.address))
        return out

    def size_classes(self):
        """{limit: [chunks, bytes]} of heap chunks in use by power-of-two size (at least
        32), and under limit 0 the mmapped chunks: without building a Chunk each."""
        classes = {}
        for arena in self.s.arenas:
            fast = {e.address for e in self._arena_bins(arena) if e.kind == "fast"}
            for _, p, size, kind, tagged, _ in self._heap_chunks(arena):
                if kind == "chunk" and tagged and p not in fast:
                    entry = classes.setdefault(max(32, 1 << (size - 1).bit_length()), [0, 0])
                    entry[0] += 1
                    entry[1] += size
        for m in self.s.mapped:
            entry = classes.setdefault(0, [0, 0])
            entry[0] += 1
            entry[1] += m.size_word & ~FLAG_BITS
        return classes

    def segments(self):
        out = []
        for arena in self.s.arenas:
            for n, seg in enumerate(arena.segments):
                out.append(Segment(seg.raw_start, seg.end, _SEGMENT_KINDS.get(seg.kind, str(seg.kind)),
                                   seg.serial, arena.fields["index"], n == 0 and arena.fields["top"] != 0))
        return sorted(out, key=lambda s: (s.arena, s.serial))

    def _free_totals(self, arena):
        entries = self._arena_bins(arena)
        fast = [e for e in entries if e.kind == "fast"]
        rest = [e for e in entries if e.kind != "fast"]
        top = self._size(arena.fields["top"]) if arena.fields["top"] else 0
        return (len(rest), sum(e.size for e in rest), len(fast), sum(e.size for e in fast), top)

    def arenas(self):
        out = []
        names = _struct_fields("prm_arena_info")
        for arena in self.s.arenas:
            f = arena.fields
            chunks, free, fast_chunks, fast_bytes, top = self._free_totals(arena)
            values = dict(index=f["index"], corrupt=f["corrupt"], top=f["top"], top_size=top,
                          system_bytes=f["system_bytes"], max_system_bytes=f["max_system_bytes"],
                          in_use_bytes=f["in_use_bytes"], in_use_chunks=f["in_use_chunks"],
                          free_bytes=free + fast_bytes + top, free_chunks=chunks + fast_chunks,
                          fast_chunks=fast_chunks, segments=f["segment_count"],
                          attached_threads=f["attached_threads"])
            out.append(Arena(**{name: values[name] for name in names}))
        return out

    def stats(self):
        """A HeapStats with what prm_get_stats would have said in the process."""
        v = dict.fromkeys(_struct_fields("prm_stats"), 0)
        for arena in self.s.arenas:
            f = arena.fields
            chunks, free, fast_chunks, fast_bytes, top = self._free_totals(arena)
            v["arena"] += f["system_bytes"]
            v["ordblks"] += chunks + (1 if top > 0 else 0)
            v["smblks"] += fast_chunks
            v["fsmblks"] += fast_bytes
            v["fordblks"] += free + fast_bytes + top
            if f["index"] == 0:
                v["keepcost"] = top
            v["in_use_bytes"] += f["in_use_bytes"]
            v["in_use_chunks"] += f["in_use_chunks"]
            v["max_arena"] += f["max_system_bytes"]
            for name, member in (("segments", "segment_count"), ("trims", "trims"),
                                 ("consolidations", "consolidations"),
                                 ("segments_opened", "segments_opened"), ("discards", "discards"),
                                 ("remote_frees", "remote_frees")):
                v[name] += f[member]
            v["remote_pending"] += self._remote_pending(arena)
            v["arenas"] += 1
        v["uordblks"] = v["arena"] - v["fordblks"]
        p = self.s.params
        v.update(max_fast=p["max_fast"], top_pad=p["top_pad"], n_mmaps_max=p["n_mmaps_max"],
                 perturb_byte=p["perturb_byte"], check_action=p["check_action"],
                 canary=p["canary"], arena_test=p["arena_test"], arena_max=p["arena_max"],
                 tcache_count=p["tcache_count"], tcache_grow=p["tcache_grow"],
                 mmap_threshold=p["mmap_threshold"],
                 trim_threshold=p["trim_threshold"], dynamic_thresholds=int(not p["no_dyn_threshold"]))
        r = self.s.registry
        v.update(hblks=r["count"], hblkhd=r["mapped_bytes"], max_hblks=r["max_count"],
                 max_hblkhd=r["max_mapped_bytes"])
        v["in_use_bytes"] += r["chunk_bytes"]
        v["in_use_chunks"] += r["count"]
        for name, value in self.s.os_counters.items():
            if name in v:
                v[name] = value
        return HeapStats(**v)

    # ---- the ledger -------------------------------------------------------------------

    def _resident(self, present, first, start, end):
        """Bytes of [start, end) on present pages; present[i] is the page at first
        (page aligned) + i pages."""
        page = self.s.page
        key = ("prefix", first)
        if key not in self._cache:     # pages present before page i, for i = 0..n
            self._cache[key] = [0, *itertools.accumulate(present)]
        prefix = self._cache[key]
        i0, i1 = (start - first) // page, (end - 1 - first) // page
        if i0 == i1:
            return end - start if present[i0] else 0
        total = (first + (i0 + 1) * page - start) * present[i0]
        total += (end - (first + i1 * page)) * present[i1]
        return total + page * (prefix[i1] - prefix[i0 + 1])

    def ledger(self):
        v = dict.fromkeys(_struct_fields("prm_ledger_info"), 0)
        tagged_bytes = tagged_resident = 0
        for arena in self.s.arenas:
            fast = {e.address for e in self._arena_bins(arena) if e.kind == "fast"}
            for seg, p, size, kind, in_use, _ in self._heap_chunks(arena):
                resident = self._resident(seg.present, seg.raw_start - seg.raw_start % self.s.page,
                                          p, p + size)
                if kind == "top":
                    v["top_bytes"] += size
                    v["top_resident"] += resident
                elif kind == "chunk" and in_use:
                    tagged_bytes += size
                    tagged_resident += resident
                    if p in fast:
                        v["free_fast_bytes"] += size
                        v["free_fast_resident"] += resident
                elif kind == "chunk":
                    v["free_binned_bytes"] += size
                    v["free_binned_resident"] += resident
            v["heap_bytes"] += arena.fields["system_bytes"]
        v["in_use_bytes"] = tagged_bytes - v["free_fast_bytes"]
        v["in_use_resident"] = tagged_resident - v["free_fast_resident"]
        v["overhead_bytes"] = (v["heap_bytes"] - v["in_use_bytes"] - v["free_fast_bytes"]
                               - v["free_binned_bytes"] - v["top_bytes"])
        for m in self.s.mapped:
            v["mmapped_bytes"] += m.length
            v["mmapped_in_use_bytes"] += m.size_word & ~FLAG_BITS
            v["mmapped_resident"] += self._resident(m.present, m.header, m.header, m.header + m.length)
            v["mmapped_chunks"] += 1
        c = self.s.os_counters
        v.update(released_by_trim=c["brk_bytes_shrunk"], released_by_munmap=c["munmap_bytes"],
                 released_by_discard=c["discard_bytes"])
        return Ledger(**v)
