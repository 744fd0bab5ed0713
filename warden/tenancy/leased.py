"""Limits admitted from what the replica holds, with no Redis call on the request path: the
leased mode (store redis) and the memory store (one replica, which holds everything).

Guarantees of the leased mode, per subject and minute window, with N replicas and a lease of
L = max(1, floor(limit x lease_fraction)) (and B, the same of max_concurrent):

- rpm: the shared counter never passes the limit (the LEASE script takes only what is left);
  a replica admits from what it was granted, plus, while a lease is in flight and the store
  has not said the window is spent, on credit: at most L owed (and no more than the room
  the store said was left at its last lease). So the requests admitted in a window are at
  most limit + N x L.
- tpm: likewise, the tokens charged (reserved, minus what settle gave back, plus what it
  charged beyond the reservation) are at most limit + N x max(L, the largest reservation
  admitted on credit) + the excess charged at settle once the window was spent (tokens
  used count even past the limit; later requests wait for the next window). A request
  reserving more than the whole tpm is refused at once (retry_after None).
- max_concurrent: the slots held by live replicas never pass the limit (the HOLD script;
  a holding lives slot_ttl after its last renewal, by Redis's clock, and the replica stops
  using it before that, by its own); a replica runs at most what it holds plus B taken on
  credit while it asks for more and the store has not said it is full. So at most
  max_concurrent + N x B in flight. A dead replica's slots come back after slot_ttl. A
  replica cut off from Redis admits nothing new on a lapsed holding (its fail_mode decides)
  but its running requests go on, and may overlap slots others took meanwhile.
- Under the limit: allowance unspent at the window's end (at most 1.5 L per replica, plus
  tokens settle gave back) simply expires, nothing is returned to Redis; a subject may be
  refused on one replica (the shared counter is spent) while another still holds room.
- budget (tokens or cost a UTC day or month, tenancy/budget.py): a bucket like tpm's whose
  window is its period, leased from its own counter: what is reserved in a period is at most
  the budget + N x max(L, the largest reservation admitted on credit), L its lease (plus what
  settle charged beyond the reservations once it was spent). A replica keeps a subject's
  budget until its period ends (forgetting it would lose the allowance it leased).
- A burst past L within one Redis round trip is refused (BURST, retry_after 1 s): the bound
  is kept rather than the request.
- The store down: what the replica holds still admits; what it does not is admitted
  unchecked (fail_mode open: counted in `state()`, and owed: charged by the first lease of
  the same window once the store is back) or refused with 503 (closed).
- Windows are the wall clock's minutes: replicas' clocks must agree (NTP); `now` is
  `time.time()` (or the limiter's `clock`).

The memory store: the same, with the whole limit held from the start: never over (but for
tpm's excess charged at settle).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from warden.config.limits_schema import LimitValues, RateLimitSpec
from warden.tenancy.answers import (
    BUDGET,
    CONCURRENT,
    UNAVAILABLE,
    Quota,
    Refusal,
    ResetTexts,
    Ticket,
    budget_spent,
    too_large,
)
from warden.tenancy.budget import iso
from warden.tenancy.health import StoreHealth
from warden.tenancy.ledger import (
    BURST,
    DOWN,
    RECHECK,
    SPENT,
    TOO_LARGE,
    WINDOW,
    window_end,
    window_of,
)
from warden.tenancy.native import NativeLimiter, Subjects
from warden.tenancy.redis_store import RedisLimits
from warden.tenancy.refill import Refiller
from warden.tenancy.subject import SubjectState
from warden.tenancy.usage import usage


class LeasedTicket(Ticket):
    """`periods`: per state, the budget's period it reserved from (-1: none); None when no
    subject had a budget (most requests: nothing built)."""

    __slots__ = ("periods", "states")

    def __init__(self, states: tuple[SubjectState, ...], tokens: int, window: int,
                 quota: Quota, checked: bool, cost: int, periods: tuple[int, ...] | None):
        super().__init__(tokens, window, quota, checked, cost)
        self.states = states
        self.periods = periods


class LeasedLimiter(NativeLimiter):
    def __init__(self, spec: RateLimitSpec, *, store: RedisLimits | None,
                 health: StoreHealth, clock: Callable[[], float] = time.time):
        self._fraction = spec.lease_fraction
        self.slot_ttl = spec.slot_ttl
        self._whole = store is None
        self.health = health
        self.clock = clock
        self.states: dict[str, SubjectState] = {}
        self._window = -1
        self.wanted: list[SubjectState] = []   # to ask the store about (tenancy/refill.py)
        self.wake = asyncio.Event()            # set when `wanted` gains one
        self.idle = asyncio.Event()            # set when nothing is wanted or in flight
        self.idle.set()
        self.double_settles = 0
        self.refusals: dict[tuple[str, str], int] = {}   # (limit, subject kind) -> 429s
        # the background loop (none for the memory store: it has nothing to ask)
        self._refill = None if store is None else Refiller(self, store, clock)
        self.store = store            # (None: the memory store)
        self._resets = ResetTexts()   # the headers' reset text, kept per millisecond

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal:
        if tokens < 0 or cost < 0:
            raise ValueError(f"tokens and cost must not be negative (got {tokens}, {cost})")
        window = window_of(now)
        if window != self._window:
            self._turn(window)
        up = self.health.up
        if len(subjects) == 1:   # (a key with limits of its own, no tenant's: no list built)
            name, limits = subjects[0]
            state = self._state(name, limits, window, now)
            kind, outcome = state.decide(tokens, cost, now, up)
            if kind:
                return self._refuse([state], state, kind, outcome, tokens, now)
            return self._take((state,), state if outcome == DOWN else None, tokens, cost, now,
                              window)
        states: list[SubjectState] = []
        down: SubjectState | None = None
        for name, limits in subjects:
            state = self._state(name, limits, window, now)
            if state in states:
                raise ValueError(f"subject {name!r} is given twice")
            states.append(state)
            kind, outcome = state.decide(tokens, cost, now, up)
            if kind:
                return self._refuse(states, state, kind, outcome, tokens, now)
            if outcome == DOWN and down is None:
                down = state
        return self._take(tuple(states), down, tokens, cost, now, window)

    def _take(self, states: tuple[SubjectState, ...], down: SubjectState | None, tokens: int,
              cost: int, now: float, window: int) -> Ticket | Refusal:
        """Every subject would admit it (`down`: the first that needs the store, down)."""
        if down is not None and not self.health.unavailable():
            return self._refuse(list(states), down, UNAVAILABLE, DOWN, tokens, now)
        quota = Quota(reset=window_end(window) - now, texts=self._resets)
        budgeted = False
        for state in states:
            if state.take(tokens, cost, now):
                self.want(state)
            state.count(quota)
            budgeted = budgeted or state.budget is not None
        periods = tuple([state.period if state.budget is not None else -1
                         for state in states]) if budgeted else None
        return LeasedTicket(states, tokens, window, quota, down is None, cost, periods)

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None:
        """Frees the slots; gives back unused tokens to the window they were taken from (if
        it is still the current one) or charges the excess to the current window; the same
        for budgets and their periods."""
        if ticket.settled or not isinstance(ticket, LeasedTicket):
            self.double_settles += 1
            return
        ticket.settled = True
        now = self.clock() if now is None else now
        window = window_of(now)
        delta = ticket.tokens - max(0, used_tokens)
        periods = ticket.periods
        for i, state in enumerate(ticket.states):
            slots = state.slots
            if slots is not None:
                slots.free()
                if not self._whole and slots.wants(now) >= 0:
                    self.want(state)
            if periods is not None and periods[i] >= 0:
                self._settle_budget(state, periods[i], ticket, used_tokens, used_cost, now,
                                    window)
            if delta == 0 or (delta > 0 and window != ticket.window):
                continue   # nothing to give back, or to a window that is over
            current = self._current(state, window, now)
            if current.tokens is not None:
                current.tokens.give(delta)
                if not self._whole and current.tokens.ask() > 0:
                    self.want(current)

    def _settle_budget(self, state: SubjectState, period: int, ticket: Ticket,
                       used_tokens: int, used_cost: int, now: float, window: int) -> None:
        """`period`: the one the ticket reserved from (a subject whose budget came with a
        reload after its admission reserved nothing: it has no settle)."""
        back = state.charge(ticket.tokens, ticket.cost) - \
            state.charge(max(0, used_tokens), max(0, used_cost))
        if back == 0:
            return
        current = self._current(state, window, now)
        budget = current.budget
        if budget is None or (back > 0 and current.period != period):
            return   # no budget now, or its unused part would go to a period that is over
        budget.give(back)
        if not self._whole and budget.ask() > 0:
            self.want(current)

    def _current(self, state: SubjectState, window: int, now: float) -> SubjectState:
        """The subject's state now (a ticket's may have been forgotten since, and its limits
        changed: the limits are the newest known, never the ticket's older ones)."""
        if window != self._window:
            self._turn(window)
        newest = self.states.get(state.name, state)
        return self._state(state.name, newest.limits, window, now)

    def want(self, state: SubjectState) -> None:
        """Queue a subject for the background loop (a lease, slots, a renewal)."""
        if not state.wanted:
            state.wanted = True
            self.wanted.append(state)
            self.idle.clear()
            self.wake.set()

    def budgets(self) -> dict[str, tuple[int, int]]:
        """subject -> (its budget's period, taken as far as this replica knows: the shared
        counter at its last lease, less what it holds unspent)."""
        return {name: (state.period, max(0, state.budget.shared - state.budget.have))
                for name, state in self.states.items() if state.budget is not None}

    async def budget_usage(self, subjects: Subjects, now: float) -> list[dict]:
        return await usage(self.store, self.budgets(), subjects, now)

    def state(self) -> dict[str, object]:
        return {**self.health.state(), "subjects": len(self.states),
                "double_settles": self.double_settles}

    async def run(self) -> None:
        """The background loop, until cancelled (the memory store has none: returns)."""
        if self._refill is not None:
            await self._refill.run()

    async def quiet(self) -> None:
        """Returns once nothing is wanted from the store or in flight (for tests)."""
        await self.idle.wait()

    async def close(self) -> None:
        """After `run` was cancelled: gives back the slots held, closes the connection."""
        if self._refill is not None:
            await self._refill.close()

    def _state(self, name: str, limits: LimitValues, window: int, now: float) -> SubjectState:
        state = self.states.get(name)
        if state is None:
            state = SubjectState(name, limits, window, self._fraction, self.slot_ttl,
                                 self._whole, now)
            self.states[name] = state
            return state
        if state.window != window:
            state.roll(window)
        if state.limits is not limits and state.limits != limits:
            state.relimit(limits, now)
        if state.budget is not None and now >= state.period_end:
            state.roll_budget(now)
        return state

    def _turn(self, window: int) -> None:
        """A new window: subjects with nothing to keep are forgotten (memory stays bounded
        by the subjects of one window plus those holding slots)."""
        self._window = window
        now = window * WINDOW
        for name in [name for name, state in self.states.items() if state.idle(window, now)]:
            del self.states[name]

    def _refuse(self, states: list[SubjectState], state: SubjectState, kind: str,
                outcome: int, tokens: int, now: float) -> Refusal:
        if kind == CONCURRENT and state.slots is not None:
            state.slots.active_at = now   # wanted: keep a block of headroom
        if not self._whole and (outcome in (BURST, DOWN) or kind == CONCURRENT):
            self.want(state)   # a lease coming, a retry, or a recheck of full slots
        quota = Quota(reset=window_end(state.window) - now, texts=self._resets)
        for one in states:
            one.count(quota)
        budget = state.limits.budget
        if kind == BUDGET and budget is not None and outcome in (TOO_LARGE, SPENT):
            return budget_spent(state.name, budget.per, budget.units, state.by_cost,
                                iso(state.period_end), quota)
        if outcome == TOO_LARGE:
            return too_large(state.name, tokens, state.limits.tpm or 0, quota)
        spent = outcome == SPENT and kind != CONCURRENT
        return Refusal(state.name, kind, quota.reset if spent else RECHECK, quota)
