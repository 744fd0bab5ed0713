"""The limiter: one object per gateway, built from `RateLimitSpec` by `build_limiter` (the
store and mode by name from a table). What each guarantees: tenancy/leased.py (leased, and
the memory store), tenancy/exact.py (exact), docs/limits.md.

Contract of a `Limiter`, for the admission stage and the exchange's end:
- `admit(subjects, tokens, now, cost)`: `subjects` are (name, LimitValues) pairs, every one
  of which applies (a key and its tenant), all or nothing; reserves one request, `tokens`
  tokens and a slot in flight on each, and `tokens` (or `cost`, in millionths, for a cost
  budget) from each budget. Synchronous and on the loop: in the leased mode and
  the memory store it never waits on Redis and answers a `Ticket` or a `Refusal`; in the
  exact mode it answers a `Future` that resolves, once, to either (it never raises), or
  answers at once when no Redis call can change the answer (too large, store down).
  `now` is the limiter's `clock()` (the wall clock, `time.time`, unless it was given another:
  the stages read it there, so that one ledger has one clock). Raises ValueError on
  a caller's bug: negative tokens, a subject given twice.
- `settle(ticket, used_tokens, now=None, used_cost=0)`: exactly once per ticket, at the
  exchange's end whatever it was (aborted streams too); never raises, never waits. Frees the
  slots, gives back the unused tokens and budget (or charges the excess). A second settle
  is ignored and counted.
- `Ticket.headers()` / `Refusal.headers()`: the rate limit header lines (b"name: value\\r\\n")
  for the response; a `Refusal` also says its status (429, 503), code and message.
- `run()`: the background work (leases, renewals, exact-mode batches), until cancelled;
  returns at once for the memory store. `close()` after it: slots given back, connection
  closed. `quiet()`: returns once nothing is waiting for the store (tests).
- `budgets()`: subject -> (period, taken) as this replica last knew it (its last lease or
  admission; no I/O): the metrics' view. `budget_usage(subjects, now)`: each subject's
  budget against what the store holds now (one Redis round trip): the admin API's view
  (tenancy/usage.py).
- `state()`: the store's state for /ready and the admin API: store, mode, fail_mode, up,
  since (wall clock), error, failures, admitted_unchecked, refused_unavailable, ...
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from collections.abc import Callable
from typing import Protocol

from warden.config.limits_schema import RateLimitSpec
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.exact import ExactLimiter
from warden.tenancy.health import StoreHealth
from warden.tenancy.leased import LeasedLimiter
from warden.tenancy.native import Subjects
from warden.tenancy.redis_store import RedisLimits

Clock = Callable[[], float]


class Limiter(Protocol):
    refusals: dict[tuple[str, str], int]   # (limit, subject kind) -> 429s (the stages count)
    clock: Clock   # the wall clock its windows are decided by

    def admit(self, subjects: Subjects, tokens: int, now: float,
              cost: int = 0) -> Ticket | Refusal | Future[Ticket | Refusal]: ...

    def settle(self, ticket: Ticket, used_tokens: int, now: float | None = None,
               used_cost: int = 0) -> None: ...

    def budgets(self) -> dict[str, tuple[int, int]]: ...

    async def budget_usage(self, subjects: Subjects, now: float) -> list[dict]: ...

    def state(self) -> dict[str, object]: ...

    async def run(self) -> None: ...

    async def quiet(self) -> None: ...

    async def close(self) -> None: ...


def _health(spec: RateLimitSpec, clock: Clock, log: logging.Logger | None) -> StoreHealth:
    return StoreHealth(store=spec.store, mode=spec.mode, fail_mode=spec.fail_mode,
                       timeout=spec.timeout, log=log, clock=clock)


def _store(spec: RateLimitSpec) -> RedisLimits:
    return RedisLimits(spec.redis_url, spec.key_prefix, spec.timeout)


def memory(spec: RateLimitSpec, clock: Clock, log: logging.Logger | None) -> Limiter:
    return LeasedLimiter(spec, store=None, health=_health(spec, clock, log), clock=clock)


def leased(spec: RateLimitSpec, clock: Clock, log: logging.Logger | None) -> Limiter:
    return LeasedLimiter(spec, store=_store(spec), health=_health(spec, clock, log),
                         clock=clock)


def exact(spec: RateLimitSpec, clock: Clock, log: logging.Logger | None) -> Limiter:
    return ExactLimiter(spec, store=_store(spec), health=_health(spec, clock, log),
                        clock=clock)


# (store, mode) -> the limiter. The memory store has one mode (exact, in effect: it holds
# the whole limit); its `mode` stays the default, `leased` (the spec rejects `exact`).
LIMITERS: dict[tuple[str, str], Callable[[RateLimitSpec, Clock, logging.Logger | None],
                                         Limiter]] = {
    ("memory", "leased"): memory,
    ("redis", "leased"): leased,
    ("redis", "exact"): exact,
}


def build_limiter(spec: RateLimitSpec, *, clock: Clock = time.time,
                  log: logging.Logger | None = None) -> Limiter:
    """The limiter the spec asks for. Call it on the event loop that will run it (its
    events belong to that loop); no connection is made until the first call."""
    return LIMITERS[(spec.store, spec.mode)](spec, clock, log)
