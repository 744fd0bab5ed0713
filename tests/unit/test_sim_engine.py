"""The simulated engine on a fake clock: batching, KV blocks, preemption, prefix caching."""

from __future__ import annotations

import heapq
import itertools

import pytest

from warden.sim.engine import EngineProfile, SimEngine
from warden.sim.kv_cache import KvCache, block_hashes
from warden.sim.scheduler import Sequence


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time(), call_at() and call_soon(), advanced by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback):
        handle = FakeHandle()
        heapq.heappush(self._queue, (when, next(self._order), handle, callback))
        return handle

    def call_soon(self, callback):
        return self.call_at(self.now, callback)

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end + 1e-9:
            when, _, handle, callback = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if not handle.cancelled:
                callback()
        self.now = end


class Recorder:
    """The engine's events, recorded."""

    def __init__(self) -> None:
        self.log: list = []
        self.preemptions = 0
        self.admissions: list[Sequence] = []

    def admitted(self, seq, queue_time):
        self.admissions.append(seq)

    def preempted(self, count):
        self.preemptions += count

    def step(self, tokens):
        self.log.append(("step", tokens))

    def first_token(self, ttft):
        self.log.append(("ttft", round(ttft, 6)))

    def token(self, itl):
        pass

    def finished(self, seq, reason, e2e):
        self.log.append(("finished", reason))


def engine(**profile) -> tuple[SimEngine, FakeLoop, Recorder]:
    loop, events = FakeLoop(), Recorder()
    return SimEngine(EngineProfile(**profile), loop, events), loop, events


def seq(tokens: list, prompt: int = 4, max_tokens: int = 3, natural: int = 100,
        ids: list[int] | None = None) -> Sequence:
    return Sequence(ids if ids is not None else list(range(1000, 1000 + prompt)), max_tokens,
                    natural, seed=1, on_token=lambda text, finish: tokens.append(finish))


def test_paced_by_prefill_then_steps():
    eng, loop, events = engine(step_time=0.1, prefill_overhead=0.4)
    out: list = []
    eng.submit(seq(out, max_tokens=3))
    loop.advance(0.49)
    assert out == []
    loop.advance(0.01)  # the prefill step: 0.1 + 0.4
    assert out == [None] and ("ttft", 0.5) in events.log
    loop.advance(0.2)
    assert out == [None, None, "length"]
    assert eng.running == [] and eng.cache.usage == 0.0


def test_max_num_seqs_queues_the_rest_in_order():
    eng, loop, _ = engine(max_num_seqs=2, step_time=0.1)
    outs = [[], [], []]
    for out in outs:
        eng.submit(seq(out, max_tokens=2))
    loop.advance(0.0)
    assert len(eng.running) == 2 and len(eng.waiting) == 1
    loop.advance(0.1)
    assert [len(o) for o in outs] == [1, 1, 0]
    loop.advance(0.1)  # the first two finish; the third is admitted in the next step
    assert [len(o) for o in outs] == [2, 2, 0]
    loop.advance(0.2)
    assert [len(o) for o in outs] == [2, 2, 2]


def test_token_budget_chunks_a_long_prefill():
    eng, loop, events = engine(max_num_batched_tokens=8, step_time=0.1)
    out: list = []
    eng.submit(seq(out, prompt=20, max_tokens=1))
    loop.advance(0.35)
    assert [e for e in events.log if e[0] == "step"] == [("step", 8), ("step", 8), ("step", 4)]
    assert out == ["length"]


def test_blocks_are_allocated_per_16_tokens_and_freed():
    eng, loop, _ = engine(step_time=0.1, num_gpu_blocks=10, block_size=16)
    out: list = []
    eng.submit(seq(out, prompt=20, max_tokens=20))
    loop.advance(0.05)
    assert eng.cache.usage == pytest.approx(2 / 10)  # 20 prompt tokens: 2 blocks
    loop.advance(0.1 * 12)  # 12 tokens out; the running step computes the 32nd token
    assert eng.cache.usage == pytest.approx(2 / 10)
    loop.advance(0.1)       # the next step computes the 33rd: blocks are taken when scheduled
    assert eng.cache.usage == pytest.approx(3 / 10)
    loop.advance(1.0)
    assert out[-1] == "length" and eng.cache.usage == 0.0


def test_waiting_when_blocks_run_out():
    eng, loop, _ = engine(step_time=0.1, num_gpu_blocks=4, block_size=16)
    first, second = [], []
    eng.submit(seq(first, prompt=40, max_tokens=5))   # 3 blocks
    eng.submit(seq(second, prompt=40, max_tokens=5))  # 3 more: does not fit
    loop.advance(0.05)
    assert len(eng.running) == 1 and len(eng.waiting) == 1
    loop.advance(1.0)
    assert first[-1] == "length" and second[-1] == "length"


def test_the_newest_is_preempted_when_a_running_sequence_needs_a_block():
    # Each sequence grows to 70 tokens (5 blocks); together they start with 4 of 6 blocks.
    eng, loop, events = engine(step_time=0.1, num_gpu_blocks=6, block_size=16)
    old, new = [], []
    first = seq(old, prompt=30, max_tokens=40)
    second = seq(new, prompt=30, max_tokens=40)
    eng.submit(first)
    eng.submit(second)
    loop.advance(0.05)
    assert eng.cache.usage == pytest.approx(4 / 6)
    loop.advance(30.0)
    assert events.preemptions >= 1
    assert second.preemptions >= 1 and first.preemptions == 0  # the newest gives way
    assert old[-1] == "length" and new[-1] == "length"          # both finish in the end
    assert len(old) == len(new) == 40                           # no token emitted twice


def test_prefix_cache_reuses_full_blocks_of_a_common_prefix():
    eng, loop, events = engine(step_time=0.1, block_size=16)
    system = list(range(5000, 5040))  # 40 tokens: 2 full blocks
    a, b = [], []
    eng.submit(seq(a, ids=[*system, 1, 2, 3], max_tokens=1))
    loop.advance(0.5)
    eng.submit(seq(b, ids=[*system, 7, 8, 9], max_tokens=1))
    loop.advance(0.5)
    second = events.admissions[-1]
    assert second.cached_tokens == 32
    assert [e for e in events.log if e[0] == "step"][-1] == ("step", 43 - 32)


def test_a_waiting_sequence_holds_no_blocks_while_it_cannot_start():
    """Its cached prefix is taken only with the rest of its blocks (as vLLM): held while it
    waits, waiting sequences could own the whole cache with nothing running — a deadlock
    seen under the routing benchmark's load."""
    eng, loop, _ = engine(step_time=0.1, num_gpu_blocks=6, block_size=16)
    system = list(range(5000, 5032))  # 2 full blocks, cached by the first request
    done, running, waiting = [], [], []
    eng.submit(seq(done, ids=[*system, 1], max_tokens=1))
    loop.advance(0.5)
    eng.submit(seq(running, prompt=64, max_tokens=10))                 # 4 fresh blocks
    eng.submit(seq(waiting, ids=[*system, *range(40)], max_tokens=5))  # 2 cached + 3: no room
    loop.advance(0.05)
    assert len(eng.waiting) == 1 and eng.waiting[0].blocks == []
    assert eng.cache.usage == pytest.approx(4 / 6)
    loop.advance(30.0)
    assert running[-1] == "length" and waiting[-1] == "length"


def test_unreferenced_cached_blocks_are_evicted_lru_when_space_is_needed():
    cache = KvCache(num_blocks=3, block_size=2)
    a, b = cache.allocate(1), cache.allocate(1)
    cache.register(a[0], 111)
    cache.register(b[0], 222)
    cache.release(a)
    cache.release(b)
    assert cache.usage == 0.0 and cache.cached_prefix([111]) == a
    cache.allocate(2)  # one plain free block, then the least recently freed cached one
    assert cache.cached_prefix([111]) == [] and cache.cached_prefix([222]) == b


def test_block_hashes_chain_the_prefix():
    assert block_hashes([1, 2, 3, 4], 2)[1] != block_hashes([9, 9, 3, 4], 2)[1]
    assert block_hashes([1, 2, 3], 2) == block_hashes([1, 2, 5], 2)


def test_abort_frees_the_slot_and_blocks():
    eng, loop, events = engine(max_num_seqs=1, step_time=0.1)
    first, second = [], []
    s1 = seq(first, max_tokens=100)
    eng.submit(s1)
    eng.submit(seq(second, max_tokens=1))
    loop.advance(0.15)
    eng.abort(s1)
    assert ("finished", "abort") in events.log
    loop.advance(0.3)
    assert second == ["length"] and eng.cache.usage == 0.0


def test_zero_cost_steps_still_finish():
    eng, loop, events = engine()
    out: list = []
    eng.submit(seq(out, max_tokens=3))
    loop.advance(0.0)
    assert out == [None, None, "length"] and events.log[-1] == ("finished", "length")


def test_stop_drops_everything_and_resets_the_cache():
    eng, loop, _ = engine(step_time=0.1, max_num_seqs=1)
    out: list = []
    eng.submit(seq(out))
    eng.submit(seq([]))
    loop.advance(0.05)
    eng.stop()
    loop.advance(1.0)
    assert out == [] and not eng.running and not eng.waiting and eng.cache.usage == 0.0


def test_extending_hashes_gives_the_same_chain_as_hashing_from_scratch():
    from warden.sim.kv_cache import extend_hashes

    tokens = list(range(100))
    first_two = extend_hashes([], tokens[:40], 16)
    assert len(first_two) == 2
    assert extend_hashes(list(first_two), tokens, 16) == block_hashes(tokens, 16)
    assert extend_hashes(list(first_two), tokens, 16, limit=4) == block_hashes(tokens, 16)[:4]
