"""The leased mode's background loop: it asks Redis for what the request path found short
(`LeasedLimiter.wanted`: a lease below half a lease, slots short or too many), renews the
slots held every third of their TTL, and pings an idle store so that `state()` stays true.

Each pass sends everything due in one batch (one pipeline: one round trip, one script per
lease or hold) and hands the answers to the ledger; requests admitted meanwhile went on
credit (tenancy/ledger.py). A failed batch marks the store down (tenancy/health.py): what
was asked is asked again after the backoff, not before, whatever wakes the loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from warden.tenancy.budget import KEEP_AFTER
from warden.tenancy.health import StoreHealth, run_turns
from warden.tenancy.ledger import WINDOW, Bucket, Slots, window_end, window_of
from warden.tenancy.redis_store import Call, RedisLimits
from warden.tenancy.subject import SubjectState

if TYPE_CHECKING:
    from warden.tenancy.leased import LeasedLimiter

PING_EVERY = 5.0   # seconds without a call, then a PING


class Lease:
    """One LEASE call: a subject's requests and tokens for one window."""

    def __init__(self, state: SubjectState, store: RedisLimits, replica: str, now: float):
        self.state = state
        self.requests, self.tokens = state.requests, state.tokens
        self.ask_r = _ask(self.requests)
        self.ask_t = _ask(self.tokens)
        ttl = math.ceil((window_end(state.window) - now + WINDOW) * 1000)
        self.call: Call = ("lease", [store.window_key(state.name, state.window)], [
            _limit(self.requests), _limit(self.tokens), self.ask_r, self.ask_t,
            max(ttl, 1000), replica])

    def apply(self, answer: list[int]) -> None:
        got_r, got_t, taken_r, taken_t, peers = answer
        if self.requests is not None and self.ask_r:
            self.requests.granted(self.ask_r, got_r, taken_r, peers)
        if self.tokens is not None and self.ask_t:
            self.tokens.granted(self.ask_t, got_t, taken_t, peers)

    def failed(self) -> None:
        if self.requests is not None and self.ask_r:
            self.requests.failed()
        if self.tokens is not None and self.ask_t:
            self.tokens.failed()


class BudgetLease:
    """One LEASE call on a subject's budget for its period (the budget's counter is a window
    hash of its own, counting tokens or cost as `t`)."""

    def __init__(self, state: SubjectState, budget: Bucket, store: RedisLimits, replica: str,
                 now: float):
        self.state, self.budget = state, budget
        self.ask = _ask(budget)
        spec = state.limits.budget
        per = spec.per if spec is not None else "day"
        ttl = math.ceil((state.period_end - now + KEEP_AFTER) * 1000)
        self.call: Call = ("lease", [store.budget_key(state.name, per, state.period)], [
            0, budget.limit, 0, self.ask, max(ttl, 1000), replica])

    def apply(self, answer: list[int]) -> None:
        self.budget.granted(self.ask, answer[1], answer[3], answer[4])

    def failed(self) -> None:
        self.budget.failed()


class Hold:
    """One HOLD call: the slots a subject's holding should be now."""

    def __init__(self, state: SubjectState, slots: Slots, want: int, store: RedisLimits,
                 replica: str, now: float):
        self.state, self.slots, self.want, self.now = state, slots, want, now
        slots.asking = True
        self.call: Call = ("hold", store.hold_keys(state.name), [
            replica, want, slots.limit, math.ceil(slots.ttl * 1000)])

    def apply(self, answer: list[int]) -> None:
        self.slots.granted(self.want, answer[0], self.now)

    def failed(self) -> None:
        self.slots.failed()


def _ask(bucket: Bucket | None) -> int:
    """What to lease for this bucket (0: nothing), marked as in flight."""
    amount = 0 if bucket is None else bucket.ask()
    if bucket is not None and amount:
        bucket.asking = amount
    return amount


def _limit(bucket: Bucket | None) -> int:
    return 0 if bucket is None else bucket.limit


class Refiller:
    """`clock`: the wall clock the ledger decides by (windows, slots' validity; a fake one in
    tests); `timer`: the loop's own cadence (backoff, pings, renewal sweeps), real time,
    which is what Redis's TTLs run on."""

    def __init__(self, limiter: LeasedLimiter, store: RedisLimits,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic):
        self.limiter = limiter
        self.store = store
        self.health: StoreHealth = limiter.health
        self.clock = clock
        self.timer = timer
        self.replica = os.urandom(8).hex()
        self.holding: set[SubjectState] = set()   # subjects this replica holds slots of
        self._sweep_every = limiter.slot_ttl / 6
        self._sweep_at = -math.inf                 # the next renewal sweep (timer)
        self._ping_at = -math.inf
        self._not_before = -math.inf               # the backoff after a failure

    async def run(self) -> None:
        """Until cancelled."""
        await run_turns(self.turn, self.limiter.wake)

    async def turn(self) -> float:
        """One pass; returns how long the loop may wait for the next (unless woken)."""
        limiter = self.limiter
        now, tick = self.clock(), self.timer()
        limiter.wake.clear()
        if tick < self._not_before:
            return self._not_before - tick
        work = self._collect(now, tick)
        try:
            if work:
                answers = await self.store.run([item.call for item in work])
            elif not self.health.up or tick >= self._ping_at:
                await self.store.ping()
        except Exception as error:  # any failure: the store is down (told, counted)
            for item in work:
                item.failed()
                limiter.wanted.append(item.state)   # asked again after the backoff
                item.state.wanted = True
            delay = self.health.failed(error)
            self._not_before = tick + delay
            return delay
        self.health.worked()
        self._ping_at = tick + PING_EVERY
        if work:
            self._apply(work, answers)
            return 0.0
        if not limiter.wanted:
            limiter.idle.set()
        return max(0.0, min(self._sweep_at, self._ping_at) - tick)

    def _collect(self, now: float, tick: float) -> list[Lease | BudgetLease | Hold]:
        limiter = self.limiter
        wanted, limiter.wanted = limiter.wanted, []
        due_by = -math.inf
        if tick >= self._sweep_at:   # renew every holding due before the next sweep
            self._sweep_at = tick + self._sweep_every
            due_by = now + self._sweep_every
            wanted += [state for state in self.holding
                       if state.slots is not None and state.slots.renew_at <= due_by]
        work: list[Lease | BudgetLease | Hold] = []
        window = window_of(now)
        for state in wanted:
            state.wanted = False
            if state.window == window and any(   # (a window that is over needs no lease)
                    bucket is not None and bucket.ask() > 0
                    for bucket in (state.requests, state.tokens)):
                work.append(Lease(state, self.store, self.replica, now))
            budget = state.budget
            if budget is not None and now < state.period_end and budget.ask() > 0:
                work.append(BudgetLease(state, budget, self.store, self.replica, now))
            slots = state.slots
            if slots is not None:
                want = slots.wants(now)
                if want < 0 and slots.held > 0 and slots.renew_at <= due_by \
                        and not slots.asking:
                    want = slots.target(now)   # a renewal, a little early
                if want >= 0:
                    work.append(Hold(state, slots, want, self.store, self.replica, now))
        return work

    def _apply(self, work: list[Lease | BudgetLease | Hold], answers: list[list[int]]) -> None:
        limiter = self.limiter
        now = self.clock()
        for item, answer in zip(work, answers, strict=True):
            item.apply(answer)
            state = item.state
            if isinstance(item, Hold):
                if item.slots.held > 0 and item.slots is state.slots:
                    self.holding.add(state)
                else:
                    self.holding.discard(state)
            if any(bucket is not None and bucket.ask() > 0
                   for bucket in (state.requests, state.tokens, state.budget)) or \
                    (state.slots is not None and state.slots.wants(now) >= 0):
                limiter.want(state)

    async def close(self) -> None:
        """Gives back the slots this replica holds (others may use them at once rather
        than after their TTL), then closes the connection. Best effort, within the timeout."""
        calls: list[Call] = [("hold", self.store.hold_keys(state.name),
                              [self.replica, 0, 0, 1000]) for state in self.holding]
        with contextlib.suppress(Exception):
            await self.store.run(calls)
        self.holding.clear()
        await self.store.close()
