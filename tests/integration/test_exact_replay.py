"""The exact mode's settles sent again after a batch that ran in Redis but whose answer was
lost (a timeout after the scripts ran, a pipeline failing in part): each is applied once,
not twice (a give-back applied twice would let the window pass its limit). The machine's
Redis, a key prefix of this test's own; the lost answer is made at the store's seam."""

from __future__ import annotations

import pytest

from tests.limits_support import (
    Clock,
    answer,
    counter,
    limiters,
    prefix_fixture,  # noqa: F401 - the fixture `prefix`
    running,
)
from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import Ticket


@pytest.mark.asyncio
async def test_a_settle_whose_answer_was_lost_is_applied_once(prefix):
    clock = Clock()
    [limiter] = limiters(prefix, 1, clock, mode="exact")
    store = limiter.store   # type: ignore[attr-defined]
    run = store.run
    lost = []

    async def ran_then_lost(calls):
        answers = await run(calls)
        if not lost and any(name == "exact_settle" for name, _, _ in calls):
            lost.append(calls)
            raise TimeoutError("the answer did not come back in time")
        return answers

    store.run = ran_then_lost
    tokens = [("t", LimitValues(tpm=1000, max_concurrent=5))]
    async with running(limiter):
        first = await answer(limiter, tokens, 600, clock.now)
        assert isinstance(first, Ticket)
        limiter.settle(first, 100)   # 500 given back: sent, run, its answer lost, sent again
        await limiter.quiet()
        assert lost, "the settle's batch was not sent"
        assert counter(prefix, "t", clock, "t") == 100   # (not -400: given back once)
        second = await answer(limiter, tokens, 900, clock.now)
        assert isinstance(second, Ticket)
        assert not isinstance(await answer(limiter, tokens, 1, clock.now), Ticket)
