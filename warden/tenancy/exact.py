"""The exact mode: each request is checked and taken in Redis by one script (EXACT_TAKE, all
subjects at once, all or nothing) before it goes on. For budgets that must never be passed.

Guarantees: the requests admitted in a window never pass rpm; the tokens reserved never pass
tpm (tokens used beyond a reservation are charged at settle, even past it: later requests
wait); the requests in flight never pass max_concurrent while every replica reaches Redis
(an entry lives slot_ttl after its last renewal, every third of it: a dead replica's come
back after slot_ttl; a live one's running requests go on past it if Redis is cut off).

Cost: `admit` returns a future; the request waits for one Redis round trip. The admissions
that arrive while a batch is in flight go together in the next one (one pipeline: one round
trip however many), but Redis runs one script per request: its one thread bounds the
rate (see docs/limits.md). `settle` costs one more script, sent in the background, unless
there is nothing to do (no slot held, the tokens used as reserved).

The store down: while it is known down, `admit` decides at once, without Redis (fail_mode
open: a ticket, unchecked and counted; closed: a 503 refusal); a batch that fails resolves
its requests the same way. Settles wait for the store (at most `MAX_SETTLES`, then the
oldest are dropped and counted: their slots expire with their TTL), and are sent again; one
that had run (a batch that timed out after running) is not applied twice (EXACT_SETTLE).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from asyncio import Future
from collections import deque
from collections.abc import Callable

from warden.config.limits_schema import RateLimitSpec
from warden.tenancy.answers import (
    BUDGET,
    CONCURRENT,
    RPM,
    TPM,
    UNAVAILABLE,
    Quota,
    Refusal,
    Ticket,
    too_large,
)
from warden.tenancy.budget import charge, period_of
from warden.tenancy.exact_parts import (
    Answer,
    ExactTicket,
    Pending,
    budget_ttl,
    spent_refusal,
    window_ttl,
)
from warden.tenancy.health import StoreHealth, run_turns
from warden.tenancy.ledger import RECHECK, WINDOW, window_end, window_of
from warden.tenancy.native import NativeLimiter, Subjects
from warden.tenancy.redis_store import Call, RedisLimits
from warden.tenancy.usage import usage

MAX_SETTLES = 100_000
PING_EVERY = 5.0
_KINDS = {1: RPM, 2: TPM, 3: CONCURRENT, 4: BUDGET}


class ExactLimiter(NativeLimiter):
    def __init__(self, spec: RateLimitSpec, *, store: RedisLimits, health: StoreHealth,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.monotonic):
        """`clock` decides windows; `timer` paces the loop (see tenancy/refill.py)."""
        self.store = store
        self.health = health
        self.clock = clock
        self.timer = timer
        self.slot_ttl = spec.slot_ttl
        self._prefix = os.urandom(6).hex()   # this replica's (its tickets', its settles')
        self._counter = 0
        self._settled = 0   # settles numbered as sent: one sent again is applied once
        self._admits: list[Pending] = []
        self._settles: deque[Call] = deque()
        self._live: dict[str, ExactTicket] = {}   # admitted, holding a slot
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.double_settles = 0
        self.refusals: dict[tuple[str, str], int] = {}   # (limit, subject kind) -> 429s
        # subject -> (its budget's period, what the store said it had taken): metrics
        self.budgets_seen: dict[str, tuple[int, int]] = {}
        self.settles_dropped = 0
        self.max_settles = MAX_SETTLES
        self._renew_at = -math.inf
        self._ping_at = -math.inf
        self._not_before = -math.inf

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal | Future[Answer]:
        if tokens < 0 or cost < 0:
            raise ValueError(f"tokens and cost must not be negative (got {tokens}, {cost})")
        names = tuple(name for name, _ in subjects)
        if len(set(names)) != len(names):
            raise ValueError(f"a subject is given twice: {names}")
        window = window_of(now)
        quota = Quota(reset=window_end(window) - now)
        limited = [(name, limits) for name, limits in subjects
                   if limits.rpm or limits.tpm or limits.max_concurrent or limits.budget]
        for name, limits in limited:
            budget = limits.budget
            if budget is not None and charge(budget, tokens, cost) > budget.units:
                return spent_refusal(name, budget, now, quota)
            if limits.tpm is not None and tokens > limits.tpm:
                return too_large(name, tokens, limits.tpm, quota)
        self._counter += 1
        ident = f"{self._prefix}-{self._counter}"
        if not limited:
            return ExactTicket(limited, names, tokens, window, quota, ident, now, cost=cost)
        if not self.health.up:
            return self._unavailable(limited, names, tokens, now, ident, cost)
        future: Future[Answer] = asyncio.get_running_loop().create_future()
        self._admits.append(Pending(future, limited, names, tokens, now, ident, cost))
        self.idle.clear()
        self.wake.set()
        return future

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None:
        if ticket.settled or not isinstance(ticket, ExactTicket):
            self.double_settles += 1
            return
        ticket.settled = True
        used_tokens, used_cost = max(0, used_tokens), max(0, used_cost)
        delta = used_tokens - ticket.tokens
        if not ticket.checked or not ticket.limited or (
                delta == 0 and used_cost == ticket.cost and not ticket.busy):
            return
        self._live.pop(ticket.ident, None)
        now = self.clock() if now is None else now
        keys: list[str] = []
        args: list[int | str] = [ticket.ident, delta, window_ttl(now)]
        for name, limits in ticket.limited:
            window = self.store.window_key(name, ticket.window)
            keys += [window, self.store.window_key(name, window_of(now)),
                     self.store.busy_key(name)]
            budget = limits.budget
            if budget is None:
                keys += [window, window]
                args += [0, 0]
                continue
            then = period_of(budget.per, ticket.window * WINDOW)
            keys += [self.store.budget_key(name, budget.per, then),
                     self.store.budget_key(name, budget.per, period_of(budget.per, now))]
            args += [charge(budget, used_tokens, used_cost) -
                     charge(budget, ticket.tokens, ticket.cost), budget_ttl(budget.per, now)]
        self._settled += 1
        keys.append(self.store.settled_key(self._prefix))
        args.append(self._settled)
        self._settles.append(("exact_settle", keys, args))
        self._bound_settles()
        self.idle.clear()
        self.wake.set()

    def budgets(self) -> dict[str, tuple[int, int]]:
        return self.budgets_seen

    async def budget_usage(self, subjects: Subjects, now: float) -> list[dict]:
        return await usage(self.store, self.budgets_seen, subjects, now)

    def state(self) -> dict[str, object]:
        return {**self.health.state(), "in_flight": len(self._live),
                "settles_waiting": len(self._settles), "settles_dropped": self.settles_dropped,
                "double_settles": self.double_settles}

    async def run(self) -> None:
        """Until cancelled."""
        await run_turns(self.turn, self.wake)

    async def quiet(self) -> None:
        await self.idle.wait()

    async def close(self) -> None:
        await self.store.close()

    async def turn(self) -> float:
        """One batch: the admissions waiting, the settles, the renewals due."""
        tick = self.timer()
        self.wake.clear()
        if tick < self._not_before and not self._admits:
            return self._not_before - tick
        admits, self._admits = self._admits, []
        settles = list(self._settles)
        self._settles.clear()
        calls = [self._take(pending) for pending in admits] + settles + self._renewals(tick)
        answers: list[list[int]] = []
        try:
            if calls:
                answers = await self.store.run(calls)
            elif not self.health.up or tick >= self._ping_at:
                await self.store.ping()
        except Exception as error:  # any failure: the store is down (told, counted)
            delay = self.health.failed(error)
            self._not_before = tick + delay
            for pending in admits:
                self._resolve(pending, self._unavailable(
                    pending.limited, pending.names, pending.tokens, pending.now, pending.ident,
                    pending.cost))
            self._settles.extendleft(reversed(settles))   # before any newer ones
            self._bound_settles()
            return delay
        self.health.worked()
        self._ping_at = tick + PING_EVERY
        for pending, answer in zip(admits, answers, strict=False):
            self._resolve(pending, self._answer(pending, answer))
        if calls:
            return 0.0
        if not self._admits and not self._settles:
            self.idle.set()
        return max(0.0, min(self._renew_at, self._ping_at) - tick)

    def _bound_settles(self) -> None:
        """Past `max_settles` waiting (a long outage), the oldest go: counted; their entries
        expire with their TTL, their tokens stay taken."""
        while len(self._settles) > self.max_settles:
            self._settles.popleft()
            self.settles_dropped += 1

    def _take(self, pending: Pending) -> Call:
        keys: list[str] = []
        args: list[int | str] = [pending.ident, window_ttl(pending.now),
                                 math.ceil(self.slot_ttl * 1000), pending.tokens]
        for name, limits in pending.limited:
            window = self.store.window_key(name, pending.window)
            keys += [window, self.store.busy_key(name)]
            args += [limits.rpm or 0, limits.tpm or 0, limits.max_concurrent or 0]
            budget = limits.budget
            if budget is None:
                keys.append(window)
                args += [0, 0, 0]
            else:
                keys.append(self.store.budget_key(
                    name, budget.per, period_of(budget.per, pending.now)))
                args += [budget.units, charge(budget, pending.tokens, pending.cost),
                         budget_ttl(budget.per, pending.now)]
        return ("exact_take", keys, args)

    def _answer(self, pending: Pending, answer: list[int]) -> Answer:
        admitted, refused_at, which = answer[0], answer[1], answer[2]
        quota = Quota(reset=window_end(pending.window) - pending.now)
        for i, (name, limits) in enumerate(pending.limited):
            taken_r, taken_t = answer[3 + 4 * i], answer[4 + 4 * i]
            if limits.budget is not None:
                self.budgets_seen[name] = (period_of(limits.budget.per, pending.now),
                                           answer[6 + 4 * i])
            if limits.rpm:
                quota.count(RPM, limits.rpm, max(0, limits.rpm - taken_r))
            if limits.tpm:
                quota.count(TPM, limits.tpm, max(0, limits.tpm - taken_t))
        if not admitted:
            kind = _KINDS[which]
            name, limits = pending.limited[refused_at - 1]
            if kind == BUDGET and limits.budget is not None:
                return spent_refusal(name, limits.budget, pending.now, quota)
            retry = RECHECK if kind == CONCURRENT else quota.reset
            return Refusal(name, kind, retry, quota)
        ticket = ExactTicket(pending.limited, pending.names, pending.tokens, pending.window,
                             quota, pending.ident, self.timer(), cost=pending.cost)
        if ticket.busy:
            self._live[ticket.ident] = ticket
        return ticket

    def _resolve(self, pending: Pending, answer: Answer) -> None:
        if not pending.future.done():
            pending.future.set_result(answer)
        elif isinstance(answer, Ticket):   # its waiter left: give it back at once
            self.settle(answer, answer.tokens)

    def _unavailable(self, limited: Subjects, names: tuple[str, ...], tokens: int,
                     now: float, ident: str, cost: int) -> Answer:
        window = window_of(now)
        quota = Quota(reset=window_end(window) - now)
        if self.health.unavailable():
            return ExactTicket(limited, names, tokens, window, quota, ident, now, False, cost)
        return Refusal(limited[0][0], UNAVAILABLE, RECHECK, quota)

    def _renewals(self, tick: float) -> list[Call]:
        """Every sixth of the TTL, the entries of requests running for a third of it."""
        if tick < self._renew_at:
            return []
        self._renew_at = tick + self.slot_ttl / 6
        due = tick - self.slot_ttl / 3
        calls: list[Call] = []
        for ticket in self._live.values():
            if ticket.renewed_at <= due:
                ticket.renewed_at = tick
                calls.append(("exact_renew", [self.store.busy_key(name)
                                              for name, limits in ticket.limited
                                              if limits.max_concurrent],
                              [ticket.ident, math.ceil(self.slot_ttl * 1000)]))
        return calls
