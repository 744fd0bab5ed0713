"""The exact mode's batching and its store-down path (warden/tenancy/exact.py), with a stand-in
store driven pass by pass (`turn`): the requests waiting go in one batch, a failed batch
resolves them by the fail mode, a known-down store answers at once, settles wait for it within
a bound. (Against a real Redis: tests/integration/test_limits_redis.py.)"""

from __future__ import annotations

import asyncio

import pytest

from warden.config.limits_schema import LimitValues, RateLimitSpec
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.exact import ExactLimiter
from warden.tenancy.health import StoreHealth
from warden.tenancy.redis_store import Call, RedisLimits

KEY = [("key", LimitValues(rpm=100, max_concurrent=10))]
NOW = 60 * 28_333_334 + 30.0


class Store(RedisLimits):
    """Keys as Redis's; calls answered here: every take admitted, or every batch failing."""

    def __init__(self) -> None:
        super().__init__("redis://127.0.0.1:1/0", "p:", 0.5)
        self.down = False
        self.batches: list[list[Call]] = []

    async def run(self, calls):
        if self.down:
            raise ConnectionError("Connection refused")
        self.batches.append(list(calls))
        return [[1, 0, 0, 1, 0, 1] if name == "exact_take" else [0] for name, _, _ in calls]

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("Connection refused")


def limiter(fail_mode: str) -> tuple[ExactLimiter, Store]:
    store = Store()
    health = StoreHealth(store="redis", mode="exact", fail_mode=fail_mode, clock=lambda: NOW)
    spec = RateLimitSpec(store="redis", mode="exact", fail_mode=fail_mode)
    return ExactLimiter(spec, store=store, health=health, clock=lambda: NOW), store


def test_the_requests_waiting_go_in_one_batch():
    async def scenario():
        exact_limiter, store = limiter("open")
        futures = [exact_limiter.admit(KEY, 10, NOW) for _ in range(5)]
        assert all(isinstance(f, asyncio.Future) and not f.done() for f in futures)
        await exact_limiter.turn()
        assert len(store.batches) == 1 and len(store.batches[0]) == 5
        tickets = [f.result() for f in futures]
        assert all(isinstance(t, Ticket) and t.checked for t in tickets)
        for ticket in tickets:
            exact_limiter.settle(ticket, 10)           # a slot each: a settle each
        await exact_limiter.turn()
        assert [name for name, _, _ in store.batches[1]] == ["exact_settle"] * 5
    asyncio.run(scenario())


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_a_failed_batch_and_a_known_down_store_answer_by_the_fail_mode(fail_mode):
    async def scenario():
        exact_limiter, store = limiter(fail_mode)
        store.down = True
        future = exact_limiter.admit(KEY, 0, NOW)
        await exact_limiter.turn()
        at_once = exact_limiter.admit(KEY, 0, NOW)    # known down: no future
        for answer in (future.result(), at_once):      # type: ignore[union-attr]
            if fail_mode == "open":
                assert isinstance(answer, Ticket) and not answer.checked
            else:
                assert isinstance(answer, Refusal) and answer.status == 503
        state = exact_limiter.state()
        key = "admitted_unchecked" if fail_mode == "open" else "refused_unavailable"
        assert state["up"] is False and state[key] == 2
    asyncio.run(scenario())


def test_settles_wait_for_the_store_within_a_bound():
    async def scenario():
        exact_limiter, store = limiter("open")
        exact_limiter.max_settles = 2
        futures = [exact_limiter.admit(KEY, 0, NOW) for _ in range(3)]
        await exact_limiter.turn()
        store.down = True
        for future in futures:
            exact_limiter.settle(future.result(), 0)
        await exact_limiter.turn()                     # fails: they wait
        state = exact_limiter.state()
        assert (state["settles_waiting"], state["settles_dropped"]) == (2, 1)
        store.down = False
        exact_limiter._not_before = 0.0                # (the backoff is over)
        await exact_limiter.turn()
        assert [len(batch) for batch in store.batches] == [3, 2]
        assert exact_limiter.state()["settles_waiting"] == 0
    asyncio.run(scenario())


def test_a_request_whose_waiter_left_is_given_back():
    async def scenario():
        exact_limiter, store = limiter("open")
        future = exact_limiter.admit(KEY, 50, NOW)
        future.cancel()                                # type: ignore[union-attr]
        await exact_limiter.turn()
        await exact_limiter.turn()
        assert [name for name, _, _ in store.batches[1]] == ["exact_settle"]
        assert exact_limiter.state()["in_flight"] == 0
    asyncio.run(scenario())
