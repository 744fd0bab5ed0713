"""Budgets shared through the machine's Redis: two gateways in exact mode under concurrent
clients never admit past a budget; three leased replicas pass it by a lease each at most; the
exact mode gives back what a request did not use; Redis stopped (a redis-server of the test's
own): each fail mode holds, and /admin/keys says where its figures come from."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
import uuid

import openai
import pytest
import redis

from tests.harness import GatewayThread, http, wait_until
from tests.limits_support import (
    REDIS,
    Clock,
    answer,
    limiters,
    load,
    prefix_fixture,  # noqa: F401 - the fixture `prefix`
    private_redis_fixture,  # noqa: F401 - the fixture `private_redis`
    running,
)
from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.budget import period_of

KEY = "wk-budget-redis-key-00000001"
MESSAGES = [{"role": "user", "content": "Tell me about the fleet, in detail"}]


def budget_counter(prefix: str, subject: str, now: float, per: str = "day") -> int:
    value = redis.Redis.from_url(REDIS).hget(
        f"{prefix}budget:{per}:{period_of(per, now)}:{subject}", "t")
    return int(value or 0)


def config(fleet, prefix: str, budget: dict, **rate_limits: object) -> dict:
    return {"backends": fleet.backends_config(),
            "auth": {"mode": "required", "tenants": {"t": {"limits": {"budget": budget}}},
                     "keys": [{"id": "k", "value": KEY, "tenant": "t"}]},
            "rate_limits": {"store": "redis", "key_prefix": prefix, **rate_limits}}


def test_two_gateways_in_exact_mode_never_pass_a_budget_under_concurrent_clients(fleet,
                                                                                  prefix):
    """60 clients on two gateways at once spend a tenant's 3,000-token budget: what the
    responses say they used never passes it, and the counter in Redis is exactly that.
    (fail_mode closed and a long timeout: a slow Redis on a loaded machine must not let
    requests in unchecked, which fail_mode open would, by design.)"""
    gateways = [GatewayThread(config(fleet, prefix, {"tokens": 3000, "per": "day"},
                                     mode="exact", fail_mode="closed", timeout="5s"))
                for _ in range(2)]
    try:
        def one(n: int) -> tuple[int, int, str]:
            client = openai.OpenAI(base_url=f"{gateways[n % 2].url}/v1", api_key=KEY,
                                   max_retries=0)
            try:
                reply = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                       max_tokens=20)
                return 200, reply.usage.total_tokens, ""
            except openai.APIStatusError as e:
                return e.status_code, 0, e.body["code"]

        with concurrent.futures.ThreadPoolExecutor(60) as pool:
            results = list(pool.map(one, range(400)))
        for gw in gateways:
            gw.wait_idle()
        used = sum(tokens for status, tokens, _ in results if status == 200)
        refusals = {code for status, _, code in results if status != 200}
        print(f"budget 3000: {used} used by {sum(s == 200 for s, _, _ in results)} requests")
        assert refusals == {"insufficient_quota"}
        assert 2500 <= used <= 3000    # (near the end, a reservation of ~30 no longer fits)
        wait_until(lambda: budget_counter(prefix, "tenant:t", time.time()) == used,
                   what="every settle in Redis")
    finally:
        for gw in gateways:
            gw.stop()


async def test_three_leased_replicas_pass_a_budget_by_a_lease_each_at_most(prefix):
    clock = Clock()
    subjects = [("tenant:t", LimitValues.model_validate(
        {"budget": {"tokens": 200_000, "per": "month"}}))]
    group = limiters(prefix, 3, clock, lease_fraction=0.05)   # a lease: 10,000 tokens
    async with running(*group):
        admitted = await asyncio.wait_for(load(group, subjects, [10, 500, 2000, 6000]), 60)
    taken = sum(admitted)
    print(f"budget 200000, 3 replicas: {taken} reserved (bound {200_000 + 3 * 10_000})")
    assert budget_counter(prefix, "tenant:t", clock.now, "month") == 200_000  # never past
    assert 200_000 - 3 * 15_000 <= taken <= 200_000 + 3 * 10_000
    usage = await group[0].budget_usage(subjects, clock.now)
    assert usage[0]["spent"] == 200_000 and usage[0]["source"] == "store"


async def test_the_exact_mode_gives_back_what_a_request_did_not_use(prefix):
    clock = Clock()
    limiter = limiters(prefix, 1, clock, mode="exact")[0]
    key = [("key:k", LimitValues.model_validate({"budget": {"cost": 0.01, "per": "day"}}))]
    async with running(limiter):
        ticket = await answer(limiter, key, 0, clock.now)   # cost 0 fits
        assert isinstance(ticket, Ticket)
        first = limiter.admit(key, 100, clock.now, cost=9000)
        first = await first if isinstance(first, asyncio.Future) else first
        assert isinstance(first, Ticket)
        refused = limiter.admit(key, 1, clock.now, cost=1001)
        refused = await refused if isinstance(refused, asyncio.Future) else refused
        assert isinstance(refused, Refusal) and refused.code == "insufficient_quota"
        limiter.settle(first, 50, used_cost=4000)
        await limiter.quiet()
        assert budget_counter(prefix, "key:k", clock.now) == 4000
        again = limiter.admit(key, 1, clock.now, cost=6000)
        again = await again if isinstance(again, asyncio.Future) else again
        assert isinstance(again, Ticket)
        assert limiter.budgets()["key:k"][1] == 10_000


@pytest.mark.parametrize(("mode", "fail_mode"), [("exact", "closed"), ("exact", "open"),
                                                 ("leased", "closed")])
def test_redis_stopped_the_fail_mode_holds_for_budgets(fleet, private_redis, mode, fail_mode):
    prefix = f"warden-test:{uuid.uuid4().hex}:"
    gw = GatewayThread({**config(fleet, prefix, {"tokens": 1_000_000, "per": "day"},
                                 mode=mode, fail_mode=fail_mode, timeout="200ms",
                                 redis_url=private_redis.url)})
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)

    def ask() -> int:
        try:
            client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=5)
            return 200
        except openai.APIStatusError as e:
            assert e.status_code != 503 or e.body["code"] == "limits_unavailable"
            return e.status_code

    try:
        # (The store up first, by its first answer: on a loaded machine the first round trip
        # to a fresh redis-server can take longer than the 200 ms timeout, refused as down.)
        wait_until(lambda: ask() == 200, what="the store's first answer")
        private_redis.stop()
        during = [ask() for _ in range(30 if mode == "exact" else 2000)]
        if fail_mode == "open":
            assert set(during) == {200}
        else:
            assert during[-1] == 503 and set(during) <= {200, 503}
        status, _, body = http("GET", f"{gw.url}/admin/keys")
        assert status == 200 and json.loads(body)["tenants"]["t"]["budget"]["source"] \
            == "replica"
        private_redis.start()
        wait_until(lambda: ask() == 200, timeout=20, what="admitting again")
    finally:
        gw.stop()
