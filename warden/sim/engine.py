"""The simulated engine: vLLM's step loop over a paged KV cache (see `scheduler`, `kv_cache`).

Steps run back to back while there is work. A step's duration is the cost model's:
`step_time + prefill_time_per_token * prefill tokens + decode_time_per_seq * decoding
sequences`, plus `prefill_overhead` when the step prefills anything. Every sequence that catches
up samples one token at the end of the step. One timer per step drives every sequence, so
thousands of streams cost one callback per step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from warden.sim.kv_cache import KvCache
from warden.sim.scheduler import (
    FINISHED,
    WAITING,
    SchedulerLimits,
    Sequence,
    StepPlan,
    complete,
    free,
    schedule,
)
from warden.sim.tokenizer import token_text

__all__ = ["EngineEvents", "EngineProfile", "Sequence", "SimEngine"]


@dataclass(frozen=True)
class EngineProfile:
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int = 4096
    block_size: int = 16
    enable_prefix_caching: bool = True
    step_time: float = 0.0               # every step's fixed cost (the decode step time)
    prefill_overhead: float = 0.0        # added to a step that prefills anything
    prefill_time_per_token: float = 0.0
    decode_time_per_seq: float = 0.0
    output_tokens: int = 16              # tokens generated when max_tokens does not stop first

    def step_cost(self, plan: StepPlan) -> float:
        cost = (self.step_time + self.prefill_time_per_token * plan.prefill_tokens
                + self.decode_time_per_seq * plan.decode_seqs)
        return cost + self.prefill_overhead if plan.prefill_tokens else cost


class EngineEvents(Protocol):
    """What the engine reports (a node's metrics listen)."""

    def admitted(self, seq: Sequence, queue_time: float) -> None: ...
    def preempted(self, count: int) -> None: ...
    def step(self, tokens: int) -> None: ...
    def first_token(self, ttft: float) -> None: ...
    def token(self, inter_token_latency: float) -> None: ...
    def finished(self, seq: Sequence, reason: str, e2e: float) -> None: ...


class SimEngine:
    def __init__(self, profile: EngineProfile, loop: asyncio.AbstractEventLoop,
                 events: EngineEvents):
        self.profile = profile
        self._loop = loop
        self._events = events
        self._limits = SchedulerLimits(profile.max_num_seqs, profile.max_num_batched_tokens)
        self.cache = KvCache(profile.num_gpu_blocks, profile.block_size,
                             profile.enable_prefix_caching)
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self._busy = False
        self._plan: StepPlan | None = None
        self._timer: asyncio.Handle | None = None
        self.hung = False      # a hang: the engine stops stepping, work stays queued
        self.slowdown = 1.0    # a slow node: every step takes this many times longer

    def hang(self) -> None:
        self.hung = True

    def resume(self) -> None:
        self.hung = False
        if not self._busy and (self.running or self.waiting):
            self._busy = True
            self._timer = self._loop.call_soon(self._step)

    def submit(self, seq: Sequence) -> None:
        seq.arrival = self._loop.time()
        self.waiting.append(seq)
        if not self._busy:
            self._busy = True
            self._timer = self._loop.call_soon(self._step)

    def abort(self, seq: Sequence) -> None:
        """The client left: drop the sequence and free its blocks (vLLM's abort)."""
        if seq.status == FINISHED:
            return
        if seq.status == WAITING:
            self.waiting.remove(seq)
        else:
            self.running.remove(seq)
        free(seq, self.cache)
        self._events.finished(seq, "abort", self._loop.time() - seq.arrival)

    def stop(self) -> None:
        """Drop every sequence without a word (the engine died)."""
        if self._timer is not None:
            self._timer.cancel()
        for seq in [*self.running, *self.waiting]:
            seq.status = FINISHED
        self.running.clear()
        self.waiting.clear()
        self.cache.reset()
        self._busy = False
        self._plan = None

    # -- the step loop ---------------------------------------------------------------------

    def _step(self) -> None:
        if self.hung:
            self._busy = False
            return
        now = self._loop.time()
        plan = schedule(self.running, self.waiting, self.cache, self._limits)
        for seq in plan.admitted:
            if seq.first_scheduled_at is None:
                seq.first_scheduled_at = now
                self._events.admitted(seq, now - seq.arrival)
        if plan.preempted:
            self._events.preempted(len(plan.preempted))
        if not plan:
            self._busy = False
            self._timer = None
            return
        self._plan = plan
        self._events.step(sum(n for _, n in plan.scheduled))
        cost = self.profile.step_cost(plan) * self.slowdown
        self._timer = (self._loop.call_soon(self._complete) if cost <= 0
                       else self._loop.call_at(now + cost, self._complete))

    def _complete(self) -> None:
        plan, self._plan = self._plan, None
        now = self._loop.time()
        for seq, finish in complete(plan, self.cache):
            if len(seq.output_ids) == 1:
                seq.first_token_at = now
                self._events.first_token(now - seq.arrival)
            else:
                self._events.token(now - seq.last_token_at)
            seq.last_token_at = now
            if finish is not None:
                self.running.remove(seq)
                free(seq, self.cache)
                self._events.finished(seq, finish, now - seq.arrival)
            seq.on_token(token_text(seq.output_ids[-1]), finish)
        self._step()
