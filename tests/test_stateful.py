"""A hypothesis state machine drives random malloc / calloc / realloc / memalign / free
(sizes 0 to 2 MiB, alignments up to 64 KiB). Every block is filled with a pattern of
its own, and after every step: no two live blocks overlap, every pattern is intact,
alignment holds, usable_size >= size, check() passes, and the in-use bytes in stats()
equal the sum over the in-use chunks of the heap walk."""
import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from hypothesis.stateful import run_state_machine_as_test

import pymalloc_real as prm
from helpers import MiB

MIN_STEPS = 2000
MAX_LIVE = 40

# Mostly small, as programs allocate, with a tail reaching past the mmap threshold.
SIZES = st.one_of(st.integers(0, 128), st.integers(0, 1100), st.integers(0, 80_000),
                  st.integers(0, 2 * MiB))
ALIGNMENTS = st.sampled_from([1 << k for k in range(17)])


def pattern(tag, size):
    return (struct.pack("<Q", tag) * (size // 8 + 1))[:size]


class HeapMachine(RuleBasedStateMachine):
    steps_checked = 0

    def __init__(self):
        super().__init__()
        self.live = {}          # tag -> (block, alignment)
        self.next_tag = 1

    def _adopt(self, block, alignment=16):
        tag = self.next_tag
        self.next_tag += 1
        block.write(pattern(tag, block.size))
        self.live[tag] = (block, alignment)

    def _pick(self, data):
        return data.draw(st.sampled_from(sorted(self.live)))

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(size=SIZES)
    def malloc(self, size):
        self._adopt(prm.malloc(size))

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(count=st.integers(0, 1000), size=st.integers(0, 2100))
    def calloc(self, count, size):
        block = prm.calloc(count, size)
        assert block.read() == bytes(count * size), "calloc memory is not zero"
        self._adopt(block)

    @precondition(lambda self: len(self.live) < MAX_LIVE)
    @rule(alignment=ALIGNMENTS, size=SIZES)
    def memalign(self, alignment, size):
        self._adopt(prm.memalign(alignment, size), alignment)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), size=SIZES)
    def realloc(self, data, size):
        tag = self._pick(data)
        block, _ = self.live.pop(tag)
        kept = min(block.size, size)
        moved = prm.realloc(block, size)
        if size == 0:
            assert moved is None and block.freed
            return
        assert block.freed and moved.read(kept) == pattern(tag, kept), "realloc lost data"
        self._adopt(moved)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data):
        block, _ = self.live.pop(self._pick(data))
        block.free()

    @invariant()
    def heap_is_sound(self):
        spans = sorted((b.address, b.address + b.size, tag) for tag, (b, _) in self.live.items())
        for (_, end, tag), (start, _, other) in zip(spans, spans[1:]):
            assert end <= start, f"blocks {tag} and {other} overlap"
        for tag, (block, alignment) in self.live.items():
            assert block.address % alignment == 0
            assert block.usable_size >= block.size
            assert block.read() == pattern(tag, block.size), f"block {tag} was overwritten"
        prm.check()
        in_use = sum(c.size for c in prm.chunks() if c.in_use)
        assert prm.stats().in_use_bytes == in_use
        HeapMachine.steps_checked += 1

    def teardown(self):
        for block, _ in self.live.values():
            block.free()
        prm.check()


def test_random_operations_keep_the_heap_sound():
    HeapMachine.steps_checked = 0
    run_state_machine_as_test(HeapMachine, settings=settings(
        max_examples=80, stateful_step_count=60, deadline=None, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]))
    print(f"{HeapMachine.steps_checked} steps checked")
    assert HeapMachine.steps_checked >= MIN_STEPS, HeapMachine.steps_checked
