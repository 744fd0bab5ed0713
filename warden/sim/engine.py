"""The simulated engine: a step loop, as vLLM's scheduler runs one.

v1 model (the engine-faithful model is a later step): at most `max_num_seqs` sequences run;
the rest wait in FIFO order. A sequence's first token comes `ttft` after it starts running;
then every step (`token_delay` apart) emits one token for every running sequence. One timer
drives all sequences, so thousands of streams cost one callback per step, not one per token.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from warden.sim.tokenizer import output_token

# on_token(text, finish_reason or None); the last call carries the finish reason.
TokenCallback = Callable[[str, str | None], None]


@dataclass(frozen=True)
class EngineProfile:
    max_num_seqs: int = 256
    ttft: float = 0.0
    token_delay: float = 0.0
    output_tokens: int = 16


class Sequence:
    __slots__ = ("emitted", "finished", "first_token_at", "max_tokens", "natural_length",
                 "on_token", "prompt_tokens", "seed", "started_at", "submitted_at")

    def __init__(self, seed: int, prompt_tokens: int, max_tokens: int, natural_length: int,
                 on_token: TokenCallback):
        self.seed = seed
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.natural_length = natural_length
        self.on_token = on_token
        self.emitted = 0
        self.finished = False
        self.submitted_at = 0.0
        self.started_at = 0.0
        self.first_token_at = 0.0

    def next_token(self) -> tuple[str, str | None]:
        text = output_token(self.seed, self.emitted)
        self.emitted += 1
        if self.emitted >= self.max_tokens:
            return text, "length"
        if self.emitted >= self.natural_length:
            return text, "stop"
        return text, None


class EngineEvents(Protocol):
    """What the engine reports (a node's metrics listen)."""

    def prompt(self, tokens: int) -> None: ...
    def first_token(self, ttft: float) -> None: ...
    def token(self) -> None: ...
    def finished(self, reason: str, e2e: float) -> None: ...


class SimEngine:
    def __init__(self, profile: EngineProfile, loop: asyncio.AbstractEventLoop,
                 events: EngineEvents):
        self.profile = profile
        self._loop = loop
        self._events = events
        self.running: list[Sequence] = []
        self.waiting: deque[Sequence] = deque()
        self._step_handle: asyncio.TimerHandle | None = None

    def submit(self, seq: Sequence) -> None:
        now = self._loop.time()
        seq.submitted_at = now
        self._events.prompt(seq.prompt_tokens)
        if self.profile.ttft == 0 and self.profile.token_delay == 0 and \
                len(self.running) < self.profile.max_num_seqs and not self.waiting:
            self._run_to_end(seq, now)  # the zero-latency profile: answer at once
            return
        self.waiting.append(seq)
        self._admit(now)
        self._schedule_step()

    def abort(self, seq: Sequence) -> None:
        if seq.finished:
            return
        seq.finished = True
        self._events.finished("abort", self._loop.time() - seq.submitted_at)
        if seq in self.running:
            self.running.remove(seq)
        else:
            self.waiting.remove(seq)
        self._admit(self._loop.time())

    def stop(self) -> None:
        """Drop every sequence without a word (the engine died)."""
        if self._step_handle is not None:
            self._step_handle.cancel()
            self._step_handle = None
        for seq in [*self.running, *self.waiting]:
            seq.finished = True
        self.running.clear()
        self.waiting.clear()

    # -- internals -------------------------------------------------------------------------

    def _admit(self, now: float) -> None:
        while self.waiting and len(self.running) < self.profile.max_num_seqs:
            seq = self.waiting.popleft()
            seq.started_at = now
            seq.first_token_at = now + self.profile.ttft
            self.running.append(seq)

    def _schedule_step(self) -> None:
        """The next step is due when a producing sequence owes its next token, or when a
        newly started one reaches its first token, whichever is sooner."""
        if self._step_handle is not None or not self.running:
            return
        now = self._loop.time()
        next_at = math.inf
        for seq in self.running:
            due = now + self.profile.token_delay if seq.emitted else seq.first_token_at
            next_at = min(next_at, due)
        self._step_handle = self._loop.call_at(next_at, self._step)

    def _step(self) -> None:
        self._step_handle = None
        now = self._loop.time()
        for seq in list(self.running):
            if seq.first_token_at <= now + 1e-4:
                self._emit(seq, now)
        self.running = [s for s in self.running if not s.finished]
        self._admit(now)
        self._schedule_step()

    def _emit(self, seq: Sequence, now: float) -> None:
        if seq.emitted == 0:
            self._events.first_token(now - seq.submitted_at)
        text, finish = seq.next_token()
        self._events.token()
        if finish is not None:
            seq.finished = True
            self._events.finished(finish, now - seq.submitted_at)
        seq.on_token(text, finish)

    def _run_to_end(self, seq: Sequence, now: float) -> None:
        seq.started_at = seq.first_token_at = now
        while not seq.finished:
            self._emit(seq, now)
