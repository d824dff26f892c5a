"""Python threads share the main arena: fast-path calls (GIL held) and cffi calls (GIL
released, the core's lock taken) interleave without damage."""
import random
import threading

import pymalloc_real as prm
from helpers import fresh_interpreter


def _worker(seed, errors):
    rng = random.Random(seed)
    live = []
    try:
        for _ in range(3000):
            op = rng.random()
            if op < 0.35 or not live:
                live.append(prm.malloc(rng.choice((16, 100, 1000, 5000, 200_000))))
            elif op < 0.5:
                live.append(prm.calloc(rng.randint(1, 50), 40))
            elif op < 0.65:
                i = rng.randrange(len(live))
                live[i] = prm.realloc(live[i], rng.randint(1, 70_000))
            else:
                live.pop(rng.randrange(len(live))).free()
        for block in live:
            block.free()
    except Exception as error:            # report to the main thread
        errors.append(error)


def test_threads_allocate_and_free_concurrently():
    errors = []
    threads = [threading.Thread(target=_worker, args=(seed, errors)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    prm.check()


def test_racing_frees_of_one_block_free_it_once():
    for _ in range(200):
        block = prm.malloc(64)
        outcomes = []
        barrier = threading.Barrier(4)

        def race():
            barrier.wait()
            try:
                block.free()
                outcomes.append("freed")
            except prm.DoubleFree:
                outcomes.append("double")

        threads = [threading.Thread(target=race) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["double", "double", "double", "freed"]
    prm.check()


@fresh_interpreter
def test_a_thread_gets_its_own_arena_on_a_heap_that_grows_and_shrinks():
    prm.mallopt(prm.M_MMAP_THRESHOLD, 1024 * 1024)     # keep 200K blocks on the heap
    prm.mallopt(prm.M_TRIM_THRESHOLD, 128 * 1024)
    prm.malloc(16).free()                              # the main thread takes arena 0
    seen = {}

    def worker():
        blocks = [prm.malloc(200 * 1024) for _ in range(10)]
        for block in blocks:
            block.touch()
        (arena,) = [a for a in prm.arenas() if a.index != 0]
        seen["grown"] = arena
        chunk = prm.chunk_of(blocks[0])
        seen["flags"] = (chunk.non_main_arena, chunk.arena, chunk.mmapped)
        for block in reversed(blocks):
            block.free()
        seen["shrunk"] = [a for a in prm.arenas() if a.index == arena.index][0]

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    grown, shrunk = seen["grown"], seen["shrunk"]
    assert seen["flags"] == (True, grown.index, False), "the A bit marks its chunks"
    assert grown.system_bytes >= 2 * 1024 * 1024, grown
    assert shrunk.system_bytes < grown.system_bytes - 1024 * 1024, (grown, shrunk)
    segments = [s for s in prm.segments() if s.arena == grown.index]
    assert segments and all(s.kind == "heap" for s in segments)
    assert all(s.start % (64 * 1024 * 1024) == 0 for s in segments), "heaps are 64 MiB aligned"
    prm.check()
