"""The simulated engine's scheduling, on a fake clock."""

from __future__ import annotations

import heapq
import itertools

from warden.sim.engine import EngineProfile, Sequence, SimEngine


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """time() and call_at(), advanced by hand."""

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

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end + 1e-9:
            when, _, handle, callback = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            if not handle.cancelled:
                callback()
        self.now = end


def engine(**profile) -> tuple[SimEngine, FakeLoop, list]:
    loop = FakeLoop()
    log: list = []

    class Recorder:
        def prompt(self, tokens): pass
        def first_token(self, ttft): log.append(("ttft", round(ttft, 6)))
        def token(self): pass
        def finished(self, reason, e2e): log.append(("finished", reason))

    return SimEngine(EngineProfile(**profile), loop, Recorder()), loop, log


def seq(tokens: list, max_tokens: int = 3, natural: int = 100) -> Sequence:
    return Sequence(seed=1, prompt_tokens=5, max_tokens=max_tokens, natural_length=natural,
                    on_token=lambda text, finish: tokens.append((text, finish)))


def test_tokens_are_paced_by_ttft_then_token_delay():
    eng, loop, log = engine(ttft=0.5, token_delay=0.1)
    out: list = []
    eng.submit(seq(out, max_tokens=3))
    loop.advance(0.49)
    assert out == []
    loop.advance(0.01)
    assert len(out) == 1 and log == [("ttft", 0.5)]
    loop.advance(0.1)
    assert len(out) == 2
    loop.advance(0.1)
    assert [f for _, f in out] == [None, None, "length"]
    assert ("finished", "length") in log and eng.running == []


def test_max_num_seqs_queues_the_rest_fifo():
    eng, loop, _ = engine(max_num_seqs=2, token_delay=0.1)
    outs = [[], [], []]
    for out in outs:
        eng.submit(seq(out, max_tokens=2))
    assert len(eng.running) == 2 and len(eng.waiting) == 1
    loop.advance(0.0)
    assert [len(o) for o in outs] == [1, 1, 0]
    loop.advance(0.1)  # the first two finish, the third starts
    assert [len(o) for o in outs] == [2, 2, 1]
    assert len(eng.running) == 1 and not eng.waiting


def test_natural_length_stops_before_max_tokens():
    eng, loop, _ = engine(token_delay=0.01)
    out: list = []
    eng.submit(seq(out, max_tokens=50, natural=4))
    loop.advance(1.0)
    assert len(out) == 4 and out[-1][1] == "stop"


def test_abort_frees_the_slot():
    eng, loop, log = engine(max_num_seqs=1, token_delay=0.1)
    first, second = [], []
    s1 = seq(first, max_tokens=100)
    eng.submit(s1)
    eng.submit(seq(second, max_tokens=1))
    loop.advance(0.0)
    eng.abort(s1)
    assert ("finished", "abort") in log
    loop.advance(0.1)
    assert second and second[-1][1] == "length"


def test_zero_latency_profile_answers_at_once():
    eng, _, log = engine()
    out: list = []
    eng.submit(seq(out, max_tokens=3))
    assert len(out) == 3 and log[-1] == ("finished", "length")


def test_stop_drops_everything():
    eng, loop, _ = engine(token_delay=0.1, max_num_seqs=1)
    out: list = []
    eng.submit(seq(out))
    eng.submit(seq([]))
    eng.stop()
    loop.advance(1.0)
    assert out == [] and not eng.running and not eng.waiting
