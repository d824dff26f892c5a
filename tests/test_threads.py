"""Python threads share the main arena: fast-path calls (GIL held) and cffi calls (GIL
released, the core's lock taken) interleave without damage."""
import random
import threading

import pymalloc_real as prm


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
