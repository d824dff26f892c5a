"""Synthetic allocation traces (issue 7): uniform, exponential and phased workloads, and
the seeds' worked examples by name. Every generator is deterministic given its seed and
returns a well-formed :class:`pymalloc_real.trace.Trace` (every free and realloc is of
a live object, ids dense in order of creation, each id created once) that ends with
every object freed, unless said otherwise. Re-exported by ``pymalloc_real.trace``.
"""
import heapq
import random

from .model import Trace

KiB = 1024


def _trace(ops, description):
    trace = Trace.from_ops(ops, description)
    # Objects are numbered in creation order, so every id below the count exists.
    return trace


def uniform(n_ops, min_size=16, max_size=4096, max_live=1000, seed=0, realloc_fraction=0.0,
            threads=1):
    """``n_ops`` operations: while room remains, malloc a size uniform in
    [min_size, max_size] or (half the time, and always at ``max_live`` objects) free a
    live object chosen uniformly; a ``realloc_fraction`` of the operations resize a live
    object to a new uniform size. The last operations free what is left, so exactly
    ``n_ops`` operations. With ``threads`` > 1 each operation runs on a random thread."""
    _check_counts(n_ops, min_size, max_size)
    rng = random.Random(seed)
    live, ops = [], []
    next_id = 0
    for step in range(n_ops):
        left = n_ops - step
        thread = rng.randrange(threads) if threads > 1 else 0
        if left <= len(live):                   # only frees fit now
            ops.append((2, live.pop(), 0, 0, thread))
            continue
        roll = rng.random()
        if live and roll < realloc_fraction:
            ops.append((3, live[rng.randrange(len(live))], rng.randint(min_size, max_size), 0,
                        thread))
        elif live and (len(live) >= max_live or left <= len(live) + 1 or roll < 0.5 + realloc_fraction / 2):
            index = rng.randrange(len(live))
            live[index], live[-1] = live[-1], live[index]
            ops.append((2, live.pop(), 0, 0, thread))
        else:
            ops.append((1, next_id, rng.randint(min_size, max_size), 0, thread))
            live.append(next_id)
            next_id += 1
    return _trace(ops, f"uniform({n_ops}, {min_size}-{max_size} bytes, <= {max_live} live, "
                       f"seed {seed})")


def exponential(n_ops, mean_size=256, mean_lifetime=100, max_size=1 << 20, seed=0):
    """``n_ops`` operations with exponentially distributed sizes (mean ``mean_size``,
    at least 1, at most ``max_size``) and lifetimes (mean ``mean_lifetime``
    operations): most objects are small and die young, a few are large or live long, as
    in real programs. Each object is freed when its time comes; the end frees the rest in
    order of death."""
    _check_counts(n_ops, 1, max_size)
    rng = random.Random(seed)
    deaths = []                     # (time of death, id)
    ops = []
    next_id = 0
    for step in range(n_ops):
        left = n_ops - step
        if deaths and (deaths[0][0] <= step or left <= len(deaths)):
            ops.append((2, heapq.heappop(deaths)[1], 0, 0, 0))
            continue
        size = min(max_size, max(1, int(rng.expovariate(1 / mean_size))))
        heapq.heappush(deaths, (step + 1 + rng.expovariate(1 / mean_lifetime), next_id))
        ops.append((1, next_id, size, 0, 0))
        next_id += 1
    return _trace(ops, f"exponential({n_ops}, mean size {mean_size}, mean lifetime "
                       f"{mean_lifetime}, seed {seed})")


# Phase size mixes: (low, high) byte ranges a phase draws from, cycled through.
PHASE_MIXES = ((16, 64), (200, 600), (2 * KiB, 16 * KiB), (64, 256), (40 * KiB, 120 * KiB))


def phased(n_phases=5, objects_per_phase=400, mixes=PHASE_MIXES, temporaries=0.3, seed=0):
    """Phases that each build a structure of ``objects_per_phase`` objects from their own
    size mix (``mixes``, cycled) and free it all together at the phase's end, as a
    compiler's passes or a server's requests do; a ``temporaries`` fraction of extra
    short-lived objects (freed two operations later) is interleaved."""
    if n_phases < 0 or objects_per_phase < 0:
        raise ValueError("n_phases and objects_per_phase must be >= 0")
    rng = random.Random(seed)
    ops = []
    next_id = 0
    for phase in range(n_phases):
        low, high = mixes[phase % len(mixes)]
        members, pending = [], []
        for _ in range(objects_per_phase):
            ops.append((1, next_id, rng.randint(low, high), 0, 0))
            members.append(next_id)
            next_id += 1
            if rng.random() < temporaries:
                ops.append((1, next_id, rng.randint(16, 512), 0, 0))
                pending.append(next_id)
                next_id += 1
            if len(pending) > 1:
                ops.append((2, pending.pop(0), 0, 0, 0))
        ops.extend((2, oid, 0, 0, 0) for oid in pending)
        rng.shuffle(members)                    # die together, in no particular order
        ops.extend((2, oid, 0, 0, 0) for oid in members)
    return _trace(ops, f"phased({n_phases} phases x {objects_per_phase} objects, seed {seed})")


def _check_counts(n_ops, min_size, max_size):
    if n_ops < 0 or min_size < 0 or max_size < min_size:
        raise ValueError(f"need n_ops >= 0 and 0 <= min_size <= max_size: {n_ops}, "
                         f"{min_size}, {max_size}")


# ---- the seeds' worked examples -------------------------------------------------------------
# Each is (where it comes from and what it shows, the operations in text form).

SEED_EXAMPLES = {
    "walkthrough": (
        "seeds 000/001, the nine steps: A=30K and B=40K push the break, C=200K is mmapped, "
        "D=100K pushes the break, free(C) unmaps, free(B) leaves a hole a new 40K request "
        "(B2) reuses, free(B2), free(D) merges B and D into 140K of free top and the heap "
        "is trimmed; A stays live",
        ["m 0 30720", "m 1 40960", "m 2 204800", "m 3 102400", "f 2", "f 1", "m 4 40960",
         "f 4", "f 3"]),
    "brk_and_mmap": (
        "seed 001's second figure: 100K and 80K from the heap, 280K by mmap; freeing the "
        "100K block first releases nothing (the 80K above it pins it) and a new 100K "
        "request reuses it; freeing 80K then lets the top be trimmed",
        ["m 0 102400", "m 1 81920", "m 2 286720", "f 2", "f 0", "m 3 102400", "f 1",
         "f 3"]),
    "memory_hole": (
        "seed 000's memory hole: eight 16K blocks freed below one small live block on "
        "top cannot go back to the kernel until the top block is freed",
        [f"m {i} 16384" for i in range(8)] + ["m 8 1024"] + [f"f {i}" for i in range(8)]
        + ["f 8"]),
    "fixed_blocks": (
        "seed 001's fixed-size (bitmap) allocation: 1M blocks for 1K requests waste "
        "99.9%; sixteen 1K requests, half freed, then eight more",
        [f"m {i} 1024" for i in range(16)] + [f"f {i}" for i in range(0, 16, 2)]
        + [f"m {16 + i} 1024" for i in range(8)]
        + [f"f {i}" for i in range(1, 16, 2)] + [f"f {16 + i}" for i in range(8)]),
    "buddy": (
        "seed 001's buddy system: an 8-page (32K) request splits 32 pages into 16+8+8; "
        "a second 8-page request takes the buddy, a 16-page one the other half; freeing "
        "the buddies merges them back to 16 pages and then to 32",
        ["a 0 32768 4096", "a 1 32768 4096", "a 2 65536 4096", "f 0", "f 1", "f 2"]),
    "fits": (
        "seed 001's four list-allocation fits told apart (Tanenbaum's exercise): holes of "
        "10K, 4K, 20K, 18K, 7K, 9K, 12K and 15K in address order (live 1K separators "
        "between them), then requests of 12K, 10K and 9K; first fit takes the 20K, 10K "
        "and 18K holes, best fit 12K, 10K and 9K, worst fit 20K, 18K and 15K, next fit "
        "20K, 18K and 9K",
        [line for i, k in enumerate((10, 4, 20, 18, 7, 9, 12, 15))
         for line in (f"m {2 * i} {k * 1024}", f"m {2 * i + 1} 1024")]
        + [f"f {2 * i}" for i in range(8)]
        + ["m 16 12288", "m 17 10240", "m 18 9216"]
        + [f"f {2 * i + 1}" for i in range(8)] + ["f 16", "f 17", "f 18"]),
    "free_order": (
        "seed 002's advice, memory allocated last should be freed first: twenty 8K blocks "
        "freed in reverse order (the top shrinks at each free) and twenty freed in "
        "allocation order (nothing returns until the last)",
        [f"m {i} 8192" for i in range(20)] + [f"f {i}" for i in reversed(range(20))]
        + [f"m {20 + i} 8192" for i in range(20)] + [f"f {20 + i}" for i in range(20)]),
}


def seed_example(name):
    """One of the seeds' worked examples as a trace: ``SEED_EXAMPLES`` names them, each
    with a sentence on what it shows (the trace's description)."""
    if name not in SEED_EXAMPLES:
        raise KeyError(f"no seed example {name!r}: the examples are "
                       f"{', '.join(SEED_EXAMPLES)}")
    description, lines = SEED_EXAMPLES[name]
    return Trace.from_text("\n".join(lines), description=f"{name}: {description}")
