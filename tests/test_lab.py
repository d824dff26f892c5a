"""The placement-policy lab (pymalloc_real.lab over csrc/lab/): one property test shared
by every region policy (random malloc/free/realloc/memalign with patterns checked, no
overlap in the walk, alignment, and the promised coalescing once everything is freed),
the textbook cases (a request sequence where best fit succeeds and first fit fails and
one where the reverse holds; the buddy system's exact splits and merges on a small
region; the pooled buddy deferring merges until its pool is free; a slab going empty to
partial to full and back), the replay's metrics and errors, and the `replay` command."""
import json
import os
import sys
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from pymalloc_real import lab
from pymalloc_real._core import ffi
from pymalloc_real.cli import main
from pymalloc_real.lab import LabError, Policy

# The policies that promise that freeing everything leaves one free block.
COALESCING = ("minimal", "first_fit", "next_fit", "best_fit", "worst_fit", "buddy",
              "buddy_pool")


def write(address, data):
    ffi.memmove(ffi.cast("void *", address), data, len(data))


def read(address, n):
    return ffi.buffer(ffi.cast("char *", address), n)[:]


def used_blocks(policy):
    return [b for b in policy.walk() if b.kind == "used"]


def check_walk(policy, live):
    blocks = policy.walk()
    for a, b in zip(blocks, blocks[1:]):
        assert a.span_start + a.span_size <= b.span_start, (a, b)
    used = {b.address: b for b in blocks if b.kind == "used"}
    assert set(used) == set(live)
    for address, data in live.items():
        assert used[address].size >= len(data)
        assert used[address].span_start <= address
        assert address + len(data) <= used[address].span_start + used[address].span_size


def everything_free(policy):
    """The walk of a policy whose every block is free: no used block, and for the
    coalescing policies one free block (split only where the high-water mark cuts it)."""
    blocks = [b for b in policy.walk() if b.kind != "meta"]
    assert not [b for b in blocks if b.kind == "used"]
    return blocks


op_strategy = st.lists(
    st.tuples(st.sampled_from(["malloc", "malloc", "malloc", "free", "free", "realloc",
                               "memalign"]),
              st.integers(0, 3000), st.integers(0, 1000), st.integers(5, 9)),
    min_size=1, max_size=60)


@pytest.mark.parametrize("name", lab.REGION_POLICIES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=op_strategy)
def test_shared_property(name, ops):
    with Policy(name, region_size=256 << 10) as p:
        live = {}                   # address -> the bytes written there
        for n, (what, size, pick, align_log2) in enumerate(ops):
            fill = bytes([n % 251 + 1]) * size
            if what in ("free", "realloc") and live:
                address = sorted(live)[pick % len(live)]
                data = live.pop(address)
                assert read(address, len(data)) == data, "a block kept its pattern"
                if what == "free":
                    p.free(address)
                else:
                    new = p.realloc(address, size)
                    if not new:
                        live[address] = data        # a failed realloc keeps the block
                        continue
                    kept = min(size, len(data))
                    assert read(new, kept) == data[:kept]
                    assert new % 16 == 0
                    write(new, fill)
                    live[new] = fill
            elif what in ("malloc", "memalign"):
                alignment = 1 << align_log2 if what == "memalign" else 16
                address = (p.memalign(alignment, size) if what == "memalign"
                           else p.malloc(size))
                if not address:
                    continue                        # the region (or the bitmap) refused
                assert address % alignment == 0
                assert p.usable_size(address) >= size
                write(address, fill)
                live[address] = fill
            check_walk(p, live)
        for address, data in live.items():
            assert read(address, len(data)) == data
            p.free(address)
        if name == "minimal":
            # The minimal allocator merges free runs as malloc walks over them.
            p.free(p.malloc(1))
        blocks = everything_free(p)
        if name in COALESCING:
            free = [b for b in blocks if b.kind == "free"]
            assert len(free) <= 1, blocks
            stats = p.stats()
            assert stats["free_total"] == stats["free_largest"]


# ---- first fit against best fit -------------------------------------------------------------

def holes(policy, totals, region):
    """Fill a fresh region with blocks of these total sizes (header included: a request
    of n bytes takes n + 16 rounded to 16), separated by 32-byte blocks, and the rest with
    one block; free the first ones: holes of exactly those sizes, in that order."""
    made = []
    for total in totals:
        made.append(policy.malloc(total - 16))
        assert policy.malloc(16)                     # a separator
    rest = region - sum(totals) - 32 * len(totals)
    assert policy.malloc(rest - 16)
    assert policy.stats()["free_total"] == 0
    for address in made:
        policy.free(address)


def test_best_fit_succeeds_where_first_fit_fails():
    # Holes of 1008 and 528; requests of 512 and 1008. First fit cuts the first hole for
    # 512 and has no room left for 1008; best fit puts 512 in the small hole.
    results = {}
    for name in ("first_fit", "best_fit"):
        with Policy(name, region_size=4096) as p:
            holes(p, [1008, 528], 4096)
            results[name] = [bool(p.malloc(512 - 16)), bool(p.malloc(1008 - 16))]
    assert results == {"first_fit": [True, False], "best_fit": [True, True]}


def test_first_fit_succeeds_where_best_fit_fails():
    # Holes of 3200 and 1600; requests of 1280, 1920, 1600. Best fit puts 1280 in the
    # small hole, leaving 320 there and 1280 in the big one: 1600 finds no room. First
    # fit cuts the big hole into exactly 1280 + 1920 and keeps the small one whole.
    results = {}
    for name in ("first_fit", "best_fit"):
        with Policy(name, region_size=16384) as p:
            holes(p, [3200, 1600], 16384)
            results[name] = [bool(p.malloc(n - 16)) for n in (1280, 1920, 1600)]
    assert results == {"first_fit": [True, True, True], "best_fit": [True, True, False]}


def test_next_fit_resumes_where_it_left_off_and_worst_fit_takes_the_largest():
    with Policy("next_fit", region_size=16384) as p:
        holes(p, [1008, 528, 1008], 16384)
        base = p.stats()["region_base"]
        first = p.malloc(100)               # the first hole
        second = p.malloc(100)              # continues in the first hole's rest
        assert first - base == 16 and second > first
    with Policy("worst_fit", region_size=16384) as p:
        holes(p, [528, 2000 // 16 * 16, 1008], 16384)
        base = p.stats()["region_base"]
        address = p.malloc(100)
        assert address - base == 16 + 528 + 32         # in the 1984-byte hole


# ---- the buddy system ------------------------------------------------------------------------

def layout(policy):
    base = policy.stats()["region_base"]
    return [(b.span_start - base, b.span_size, b.kind[0].upper()) for b in policy.walk()]


def test_buddy_split_and_merge_sequence():
    # 4096 bytes, smallest block 256: orders 8 (256) to 12 (4096).
    with Policy("buddy", region_size=4096, min_block=256) as p:
        p.free(p.malloc(4096))                          # touch it all: no untouched tail
        s0 = p.stats()
        a = p.malloc(300)                               # 512: 4096 -> 2048 -> 1024 -> 512
        assert layout(p) == [(0, 512, "U"), (512, 512, "F"), (1024, 1024, "F"),
                             (2048, 2048, "F")]
        assert p.stats()["splits"] - s0["splits"] == 3
        b = p.malloc(200)                               # 256: the free 512 splits
        assert layout(p) == [(0, 512, "U"), (512, 256, "U"), (768, 256, "F"),
                             (1024, 1024, "F"), (2048, 2048, "F")]
        c = p.malloc(1000)                              # 1024: no split
        assert p.stats()["splits"] - s0["splits"] == 4
        assert [p.usable_size(x) for x in (a, b, c)] == [512, 256, 1024]
        p.free(b)                                       # merges with 768, not with A
        assert layout(p) == [(0, 512, "U"), (512, 512, "F"), (1024, 1024, "U"),
                             (2048, 2048, "F")]
        assert p.stats()["merges"] - s0["merges"] == 1
        p.free(a)                                       # 0+512 -> 1024; C blocks more
        assert layout(p) == [(0, 1024, "F"), (1024, 1024, "U"), (2048, 2048, "F")]
        p.free(c)                                       # 1024+1024, then 2048+2048
        assert layout(p) == [(0, 4096, "F")]
        assert p.stats()["merges"] - s0["merges"] == 4


def test_buddy_memalign_is_natural_alignment():
    with Policy("buddy") as p:
        address = p.memalign(1 << 16, 100)
        assert address % (1 << 16) == 0 and p.usable_size(address) == 1 << 16


def test_buddy_pool_defers_merging_until_the_pool_is_free():
    with Policy("buddy_pool", region_size=65536, min_block=256, pool_size=4096) as p:
        p.free(p.malloc(65536))
        blocks = [p.malloc(200) for _ in range(4)]       # four 256s in pool 0
        splits = p.stats()["splits"]
        p.free(blocks[1])
        p.free(blocks[2])
        assert p.stats()["merges"] == 0                  # no merge below the pool order
        again = p.malloc(200)
        assert again == blocks[2]                        # the deferred block comes back
        assert p.stats()["splits"] == splits             # without a split
        for address in (blocks[0], blocks[3], again):
            p.free(address)
        stats = p.stats()
        assert stats["pool_releases"] == 1
        assert layout(p) == [(0, 65536, "F")]


# ---- slabs -----------------------------------------------------------------------------------

def test_slab_goes_empty_partial_full_and_back():
    constructed = []
    with Policy("slab") as p:
        cache = p.cache_create("thing", 200, ctor=constructed.append)
        info = p.cache_info(cache)
        per = info.objects_per_slab
        assert (info.name, info.object_size, info.slab_size) == ("thing", 208, 4096)
        assert per == (4096 - 128) // 208
        state = lambda: (lambda i: (i.slabs_empty, i.slabs_partial, i.slabs_full))(p.cache_info(cache))
        assert state() == (0, 0, 0)
        objects = [p.cache_alloc(cache)]
        assert state() == (0, 1, 0)                      # a new slab, partial
        assert len(constructed) == per and objects[0] in constructed
        objects += [p.cache_alloc(cache) for _ in range(per - 1)]
        assert state() == (0, 0, 1)                      # full
        extra = p.cache_alloc(cache)
        assert state() == (0, 1, 1) and len(constructed) == 2 * per
        p.cache_free(cache, extra)
        assert state() == (1, 0, 1)                      # the second slab empty
        p.cache_free(cache, objects.pop())
        assert state() == (1, 1, 0)                      # full back to partial
        for address in objects:
            p.cache_free(cache, address)
        # One empty slab is kept; the other's pages went back to the page allocator.
        assert state() == (1, 0, 0)
        assert p.cache_info(cache).objects_in_use == 0
        again = p.cache_alloc(cache)
        assert len(constructed) == 2 * per               # no new slab, no constructor
        assert again in constructed


def test_kmalloc_takes_the_smallest_class_and_large_requests_get_pages():
    with Policy("slab") as p:
        names = [c.name for c in p.caches()]
        assert names[:3] == ["kmalloc-16", "kmalloc-32", "kmalloc-64"]
        assert names[-1] == "kmalloc-32k"
        assert p.usable_size(p.malloc(100)) == 128
        assert p.usable_size(p.malloc(150)) == 192
        assert p.usable_size(p.malloc(40000)) == 65536
        assert p.memalign(256, 10) % 256 == 0


def test_bitmap_gives_one_block_per_request():
    with Policy("bitmap", block_size=64, region_size=64 * 100) as p:
        addresses = [p.malloc(64) for _ in range(100)]
        assert all(addresses) and p.malloc(1) == 0       # full
        assert p.malloc(65) == 0 or True
        p.free(addresses[37])
        assert p.malloc(10) == addresses[37]             # the lowest free block
    with Policy("bitmap", block_size=64) as p:
        assert p.malloc(65) == 0                         # above the block size


# ---- replay ----------------------------------------------------------------------------------

def churn_trace(n=4000, seed=3):
    rnd = random.Random(seed)
    ops, live, next_id = [], [], 0
    for _ in range(n):
        if live and rnd.random() < 0.45:
            oid = live.pop(rnd.randrange(len(live)))
            if rnd.random() < 0.2:
                ops.append((lab.REALLOC, oid, rnd.randrange(1, 400)))
                live.append(oid)
            else:
                ops.append((lab.FREE, oid, 0))
        else:
            kind = rnd.choice([lab.MALLOC] * 8 + [lab.CALLOC, lab.MEMALIGN])
            op = (kind, next_id, rnd.choice([8, 24, 64, 200, 1000, 5000]))
            ops.append(op + (6,) if kind == lab.MEMALIGN else op)
            live.append(next_id)
            next_id += 1
    return ops


def test_replay_under_every_policy_with_verification():
    trace = churn_trace()
    comparison = lab.compare(trace, verify=True)
    assert [r.policy for r in comparison.results] == list(lab.POLICIES)
    for r in comparison.results:
        assert r.ops == len(trace)
        assert r.peak_live > 0 and r.series and r.series[-1].op == len(trace)
        if r.policy == "bitmap":
            assert r.failed > 0                          # 1000 and 5000 > 256
        else:
            assert r.failed == 0 and r.skipped_frees == 0
        if r.policy in lab.REGION_POLICIES:
            assert r.peak_footprint >= r.peak_live or r.policy == "bitmap"
            assert r.external_fragmentation is not None
        else:
            assert r.external_fragmentation is None
    assert comparison.loop_ns_per_op > 0
    table = comparison.as_table()
    assert all(f"| {name} |" in table for name in lab.POLICIES)


def test_replay_metrics_of_a_small_trace():
    trace = [(lab.MALLOC, 0, 100), (lab.MALLOC, 1, 200), (lab.FREE, 0, 0),
             (lab.MALLOC, 2, 50), (lab.FREE, 5, 0), (lab.REALLOC, 1, 300)]
    r = lab.replay(trace, "first_fit", sample_every=1)
    assert (r.mallocs, r.frees, r.reallocs, r.failed, r.skipped_frees) == (3, 1, 1, 0, 1)
    assert r.peak_live == 350
    assert r.peak_footprint == 4096
    assert r.internal_at_peak == (64 - 50) + (304 - 300)     # usable: n + 16 to 16s, - 16
    assert [s.op for s in r.series] == list(range(7))
    assert r.loop_ns_per_op is not None


def test_replay_accepts_a_packed_trace_object():
    class Packed:
        n_objects = 2

        def packed(self):
            return lab.pack([(1, 0, 10), (5, 1, 100, 8), (2, 0, 0), (2, 1, 0)]).data
    r = lab.replay(Packed(), "buddy")
    assert (r.mallocs, r.frees) == (2, 2)


def test_text_form_parses_every_letter(tmp_path):
    path = tmp_path / "t.trace"
    path.write_text("# a comment\nm 0 100\nc 1 32\na 2 100 64  # aligned\nr 0 10\nf 1\n")
    assert lab.parse_text(path.read_text()) == [(1, 0, 100), (4, 1, 32), (5, 2, 100, 6),
                                                (3, 0, 10), (2, 1, 0)]
    with pytest.raises(LabError, match="line 1"):
        lab.parse_text("x 1 2")
    with pytest.raises(LabError, match="power of two"):
        lab.parse_text("a 0 10 48")


@pytest.mark.parametrize("trace, message", [
    ([(9, 0, 1)], "not \\(op 1-5"),
    ([(1, -1, 1)], "not \\(op 1-5"),
    ("m 0 1", "lab.load"),
])
def test_bad_traces_are_errors(trace, message):
    with pytest.raises(LabError, match=message):
        lab.replay(trace, "first_fit")


def test_malloc_of_a_live_id_is_a_trace_error():
    with pytest.raises(LabError, match="bad trace at op 1"):
        lab.replay([(1, 0, 10), (1, 0, 10)], "buddy")


@pytest.mark.parametrize("kwargs, message", [
    (dict(policy="tlsf"), "unknown policy"),
    (dict(policy="buddy", region_size=100), "region_size"),
    (dict(policy="buddy", min_block=24), "min_block"),
    (dict(policy="bitmap", block_size=17), "block_size"),
    (dict(policy="slab", slab_size=1000), "slab_size"),
    (dict(policy="buddy_pool", pool_size=1 << 30, region_size=1 << 20), "too small"),
])
def test_bad_parameters_are_errors(kwargs, message):
    with pytest.raises(LabError, match=message):
        lab.replay([(1, 0, 10)], **kwargs)


def test_a_full_region_fails_requests_but_never_crashes():
    trace = [(lab.MALLOC, i, 1000) for i in range(100)]
    for name in lab.REGION_POLICIES:
        r = lab.replay(trace, name, region_size=16384, baseline=False,
                       **({"block_size": 1024} if name == "bitmap" else {}))
        assert 0 < r.failed < 100, name


def test_picture_shows_used_and_free_blocks(tmp_path):
    trace = [(1, i, 100) for i in range(10)] + [(2, i, 0) for i in range(0, 10, 2)]
    text = lab.picture(trace, "first_fit", width=40, path=str(tmp_path / "p.png"))
    lines = text.splitlines()
    assert lines[0].startswith("first_fit at the end of the trace")
    assert "#" in lines[1] and "." in lines[1] and len(lines[1]) == 42
    assert lines[2].startswith("5 used blocks")
    assert os.path.getsize(tmp_path / "p.png") > 1000
    assert "after 3 ops" in lab.picture(trace, "buddy", at_op=3)
    with pytest.raises(LabError, match="no region"):
        lab.picture(trace, "glibc")


def test_walk_is_unsupported_for_the_real_allocators():
    with Policy("glibc") as p:
        with pytest.raises(LabError, match="no walk"):
            p.walk()
        assert p.stats()["free_total"] is None


def test_compare_plot_writes_a_png(tmp_path):
    comparison = lab.compare(churn_trace(1000), ["first_fit", "buddy", "glibc"])
    path = comparison.plot(str(tmp_path / "footprint.png"))
    assert os.path.getsize(path) > 5000
    assert json.dumps(comparison.as_dict())


def test_replay_command(tmp_path, capsys):
    path = tmp_path / "t.trace"
    path.write_text("".join(f"m {i} {16 * (i % 7 + 1)}\n" for i in range(50))
                    + "".join(f"f {i}\n" for i in range(0, 50, 3)))
    assert main(["replay", str(path), "--policies", "first_fit,buddy,slab",
                 "--plot", str(tmp_path / "r.png"), "--picture", "buddy@20"]) == 0
    out = capsys.readouterr().out
    assert "| first_fit |" in out and "| slab |" in out and "| glibc |" not in out
    assert "buddy after 20 ops" in out and os.path.exists(tmp_path / "r.png")
    assert main(["replay", str(path), "--json", "--policies", "bitmap",
                 "--block-size", "64", "--region", "1M"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trace"]["ops"] == 67 and data["results"][0]["policy"] == "bitmap"
    assert main(["replay", str(path), "--policies", "nope"]) == 2
    assert "unknown policy" in capsys.readouterr().err


# ---- a trace recorded from a real program ------------------------------------------------

def _record(program, tmp_path):
    """A real program's trace, recorded through the preload library: CPython running a
    script (every object through malloc), or gcc compiling a file (its cc1 process)."""
    trace_module = pytest.importorskip("pymalloc_real.trace")
    if program == "cpython":
        script = ("import json, re\n"
                  "rows = [{'id': i, 'name': f'item{i}', 'tags': ['a'] * (i % 7)} for i in range(500)]\n"
                  "text = json.dumps(rows)\n"
                  "print(len(re.findall(r'item[0-9]+', text)), len(json.loads(text)))\n")
        return trace_module.record([sys.executable, "-S", "-c", script],
                                   env={"PYTHONMALLOC": "malloc"})
    source = tmp_path / "prog.c"
    source.write_text("".join(
        f"static int f{i}(int x) {{ int a[{i % 9 + 1}] = {{0}}; for (int k = 0; k < x; k++) "
        f"a[k % {i % 9 + 1}] += k * {i}; return a[0]; }}\n" for i in range(20))
        + "int main(void) { return " + " + ".join(f"f{i}(3)" for i in range(20)) + "; }\n")
    recording = trace_module.record_run(["gcc", "-O2", "-c", str(source), "-o",
                                         str(tmp_path / "prog.o")])
    assert recording.report.exit_status == 0, recording.report
    return recording.largest()                    # cc1: the compiler proper


@pytest.mark.parametrize("program", ["cpython", "gcc"])
def test_a_recorded_program_replays_under_every_policy(program, tmp_path, capsys):
    recorded = _record(program, tmp_path)
    assert len(recorded) > 5000, len(recorded)
    path = tmp_path / f"{program}.trace"
    recorded.save(str(path))
    comparison = lab.compare(recorded, time_limit=4)
    assert [r.policy for r in comparison.results] == list(lab.POLICIES)
    for r in comparison.results:
        assert r.ops == len(recorded) or r.timed_out, r.policy
        assert r.mallocs > 0 and r.peak_live > 0
        if r.policy not in ("bitmap",):           # bitmap refuses blocks above its size
            assert r.failed == 0, r.policy
        # Every policy holds at least what is live at once (the real allocators' peak is
        # measured at samples and at each new high of the live bytes).
        if not r.timed_out and r.failed == 0:
            assert r.peak_footprint >= 0.9 * r.peak_live, (r.policy, r.peak_footprint, r.peak_live)
    plot = tmp_path / f"{program}.png"
    assert main(["replay", str(path), "--plot", str(plot), "--time-limit", "4"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {name}" in out for name in lab.POLICIES), out
    assert os.path.getsize(plot) > 5000


def test_replay_visits_each_sample_with_the_heap_as_it_is_then():
    """visit(ops_done) runs at every sample (and at sample_at) while the policy holds the
    objects live then: a walk inside it sees exactly them; its exception surfaces."""
    trace = [(lab.MALLOC, i, 64) for i in range(10)] + [(lab.FREE, i, 0) for i in range(10)]
    seen = {}
    with lab.Policy("first_fit") as policy:
        def visit(ops_done):
            seen[ops_done] = sum(b.kind == "used" for b in policy.walk())
        policy.replay(trace, sample_every=5, visit=visit, sample_at=7)
        assert seen == {0: 0, 5: 5, 7: 7, 10: 10, 15: 5, 20: 0}

        def broken(ops_done):
            raise RuntimeError(f"at {ops_done}")
        with pytest.raises(RuntimeError, match="at 0"):
            policy.replay(trace, sample_every=5, visit=broken)
        with pytest.raises(lab.LabError, match="sample_at"):
            policy.replay(trace, sample_at=0)
