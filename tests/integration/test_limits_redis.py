"""Limits shared through the machine's Redis (warden/tenancy), three limiters in one process
standing for three replicas: the bounds under load (reached exactly, with gated leases),
tokens given back or charged, slots shared, renewed, returned; the exact mode never over;
Redis stopped and restarted (a redis-server of the test's own) or hanging: each fail mode."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
import redis

from tests.limits_support import (
    REDIS,
    Clock,
    WallClock,
    answer,
    counter,
    gated_limiter,
    limiters,
    load,
    prefix_fixture,  # noqa: F401 - the fixture `prefix`
    private_redis_fixture,  # noqa: F401 - the fixture `private_redis`
    running,
    told,
)
from tests.tcp_proxy import FORWARD, HANG, TcpProxy
from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.ledger import RECHECK, window_of


@pytest.mark.parametrize(("subjects", "costs", "kind", "limit", "bound"), [
    ([("key", LimitValues(rpm=600)), ("tenant", LimitValues(rpm=5000, tpm=10**7))],
     [10, 200, 4000], "r", 600, 3 * 30),               # lease_fraction 0.05: 30 requests
    ([("tenant", LimitValues(tpm=200_000))], [10, 500, 2000, 6000], "t", 200_000,
     3 * 10_000),                                      # 10,000 tokens > any reservation
], ids=["rpm", "tpm"])
async def test_three_replicas_under_load_pass_the_limit_by_a_lease_each_at_most(
        prefix, subjects, costs, kind, limit, bound):
    clock = Clock()
    group = limiters(prefix, 3, clock, lease_fraction=0.05)
    async with running(*group):
        admitted = await asyncio.wait_for(load(group, subjects, costs), 60)
    taken = len(admitted) if kind == "r" else sum(admitted)
    print(f"limit {limit}, 3 replicas: {taken} admitted (overshoot {taken - limit}, "
          f"bound {bound})")
    assert counter(prefix, subjects[0][0], clock, kind) == limit   # the counter never passes
    assert taken <= limit + bound
    assert kind == "t" or taken >= limit               # (every replica spent what it held)


async def test_the_bound_is_reached_when_each_replica_borrows_as_the_counter_runs_out(prefix):
    clock = Clock()
    key = LimitValues(rpm=100)                         # lease 5
    pairs = [gated_limiter(prefix, clock, lease_fraction=0.05) for _ in range(3)]
    group = [limiter for limiter, _ in pairs]
    async with running(*group):
        for limiter, store in pairs:                   # each asks, its lease held at the gate
            results = [limiter.admit([("key", key)], 0, clock.now) for _ in range(8)]
            assert [isinstance(r, Ticket) for r in results] == [True] * 5 + [False] * 3
            assert all(r.retry_after == RECHECK for r in results[5:])   # BURST: soon
            await store.waiting.wait()
        redis.Redis.from_url(REDIS).hset(f"{prefix}win:{window_of(clock.now)}:key", "r", 100)
        for limiter, store in pairs:                   # meanwhile others spent the window
            store.gate.set()
            await limiter.quiet()
        for limiter in group:
            refusal = limiter.admit([("key", key)], 0, clock.now)
            assert isinstance(refusal, Refusal) and refusal.retry_after == 30.0  # spent
    assert counter(prefix, "key", clock) == 100        # 15 admitted past it: 3 leases


async def test_tokens_reserved_then_settled_are_given_back_here_or_charged(prefix):
    clock = Clock()
    [limiter] = limiters(prefix, 1, clock, lease_fraction=0.05)
    tokens = [("t", LimitValues(tpm=10_000))]          # lease 500
    async with running(limiter):
        first = limiter.admit(tokens, 2000, clock.now)  # on credit: owes 2000
        assert isinstance(first, Ticket) and first.quota.remaining_tokens == 8000
        await limiter.quiet()
        assert counter(prefix, "t", clock, "t") == 2500  # a lease plus the debt
        window_key = f"{prefix}win:{window_of(clock.now)}:t"
        assert 60_000 < redis.Redis.from_url(REDIS).pttl(window_key) <= 90_000   # 30 s + 60
        limiter.settle(first, 500)                     # 1500 back, to this replica
        second = limiter.admit(tokens, 2000, clock.now)
        assert isinstance(second, Ticket)
        await limiter.quiet()
        assert counter(prefix, "t", clock, "t") == 3000  # one lease more, no return
        limiter.settle(second, 3000)                   # 1000 past its reservation
        await limiter.quiet()
        assert counter(prefix, "t", clock, "t") == 4000  # charged with the next lease


async def test_slots_are_shared_by_replicas_freed_by_settle_and_given_back_at_close(prefix):
    clock = Clock()
    one, two = limiters(prefix, 2, clock, lease_fraction=0.25)   # blocks of 1
    busy = [("key", LimitValues(max_concurrent=4))]
    hold = redis.Redis.from_url(REDIS)
    async with running(one, two):
        tickets = []
        for _ in range(4):
            tickets.append(one.admit(busy, 0, clock.now))
            await one.quiet()
        assert all(isinstance(t, Ticket) for t in tickets)
        assert isinstance(one.admit(busy, 0, clock.now), Refusal)   # holds all 4: no credit
        credit = two.admit(busy, 0, clock.now)        # one on credit, then told: full
        await two.quiet()
        assert isinstance(credit, Ticket)
        assert isinstance(two.admit(busy, 0, clock.now), Refusal)
        for ticket in [*tickets, credit]:
            (one if ticket is not credit else two).settle(ticket, 0)
        await one.quiet()
        assert sum(int(v) for v in hold.hvals(f"{prefix}hold:key")) < 4
        for kind in ("hold", "hold-until"):
            assert 0 < hold.pttl(f"{prefix}{kind}:key") <= 30_000
        clock.now += RECHECK                          # the full answer is stale:
        assert isinstance(two.admit(busy, 0, clock.now), Ticket)     # a credit asks again
        await two.quiet()
        assert isinstance(two.admit(busy, 0, clock.now), Ticket)     # held now
    assert hold.hvals(f"{prefix}hold:key") == []       # close gave every slot back


async def test_a_dead_replicas_slots_come_back_after_their_ttl(prefix):
    clock = WallClock()                                # real time: Redis's TTL
    dead, alive = limiters(prefix, 2, clock, lease_fraction=0.5, slot_ttl="1s",
                           timeout="200ms")
    busy = [("key", LimitValues(max_concurrent=2))]
    task = asyncio.create_task(dead.run())
    for _ in range(2):
        dead.admit(busy, 0, clock.now)
        await dead.quiet()
    task.cancel()                                      # it dies: no close, no give-back
    await asyncio.gather(task, return_exceptions=True)
    started = time.monotonic()
    async with running(alive):
        assert isinstance(alive.admit(busy, 0, clock.now), Ticket)   # on credit; then
        await alive.quiet()                            # told: full
        assert isinstance(alive.admit(busy, 0, clock.now), Refusal)
        while time.monotonic() - started < 10:         # asked again each RECHECK, until
            result = alive.admit(busy, 0, clock.now)  # Redis dropped the dead holding
            await alive.quiet()
            if isinstance(result, Ticket):
                break
            await asyncio.sleep(0.05)                 # (polling: the TTL runs in Redis)
        assert isinstance(result, Ticket)
        assert 1.0 <= time.monotonic() - started < 1.0 + 2 * RECHECK + 1


async def test_held_slots_outlive_their_ttl_while_renewed_and_shrink_when_idle(prefix):
    clock = WallClock()                                # real time: renewals, Redis's TTL
    [limiter] = limiters(prefix, 1, clock, lease_fraction=0.5, slot_ttl="1s",
                         timeout="200ms")
    busy = [("key", LimitValues(max_concurrent=4))]    # blocks of 2
    async with running(limiter):
        assert isinstance(limiter.admit(busy, 0, clock.now), Ticket)
        await limiter.quiet()
        holding = redis.Redis.from_url(REDIS).hvals(f"{prefix}hold:key")
        assert holding == [b"3"]                       # 1 in use + a block
        await asyncio.sleep(2.5)                       # over two TTLs, idle
        holding = redis.Redis.from_url(REDIS).hvals(f"{prefix}hold:key")
        assert holding == [b"1"]                       # renewed, shrunk to what is in use


async def test_exact_mode_never_passes_a_limit_under_load(prefix, workers=60):
    clock = Clock()
    group = limiters(prefix, 3, clock, mode="exact")
    subjects = [("key", LimitValues(rpm=150)), ("tenant", LimitValues(max_concurrent=5))]
    in_flight, most, admitted = [0], [0], [0]

    async def client(n: int) -> None:
        """Until refused on rpm."""
        limiter = group[n % 3]
        while True:
            result = await answer(limiter, subjects, 0, clock.now)
            if isinstance(result, Refusal) and result.limit == "rpm":
                return
            if isinstance(result, Ticket):
                admitted[0] += 1
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
                for _ in range(3):
                    await asyncio.sleep(0)
                in_flight[0] -= 1
                limiter.settle(result, 0)
            await asyncio.sleep(0)

    async with running(*group):
        await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(workers))), 60)
        for limiter in group:
            await limiter.quiet()
    assert admitted[0] == 150 == counter(prefix, "key", clock)   # exactly, never past
    assert most[0] <= 5
    assert redis.Redis.from_url(REDIS).zcard(f"{prefix}busy:tenant") == 0


async def test_exact_mode_gives_back_unused_tokens_and_charges_the_excess(prefix):
    clock = Clock()
    [limiter] = limiters(prefix, 1, clock, mode="exact")
    tokens = [("t", LimitValues(tpm=1000))]
    async with running(limiter):
        first = await answer(limiter, tokens, 600, clock.now)
        assert isinstance(first, Ticket) and first.quota.remaining_tokens == 400
        assert (await answer(limiter, tokens, 600, clock.now)).limit == "tpm"  # type: ignore
        limiter.settle(first, 100)
        await limiter.quiet()
        assert counter(prefix, "t", clock, "t") == 100
        second = await answer(limiter, tokens, 600, clock.now)
        assert isinstance(second, Ticket)
        limiter.settle(second, 900)
        await limiter.quiet()
        assert counter(prefix, "t", clock, "t") == 1000
        assert isinstance(await answer(limiter, tokens, 1, clock.now), Refusal)


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_leased_with_redis_stopped_then_restarted(private_redis, fail_mode, caplog):
    """What the replica holds still admits; past it, open admits unchecked (and charges it
    once Redis is back), closed refuses with 503; told once; recovered without restart."""
    caplog.set_level(logging.WARNING, logger="warden.limits")
    clock = Clock()
    [limiter] = limiters("f:", 1, clock, url=private_redis.url, fail_mode=fail_mode,
                         lease_fraction=0.05, timeout="200ms")
    key = [("key", LimitValues(rpm=1000))]             # lease 50
    async with running(limiter):
        limiter.admit(key, 0, clock.now)
        await limiter.quiet()                          # holds 50
        private_redis.stop()
        held = [limiter.admit(key, 0, clock.now) for _ in range(50)]
        assert all(isinstance(t, Ticket) and t.checked for t in held)
        await asyncio.wait_for(limiter.health.until(False), 10)   # its refill failed
        past = [limiter.admit(key, 0, clock.now) for _ in range(5)]
        state = limiter.state()
        assert state["up"] is False and "Connection" in str(state["error"])
        if fail_mode == "open":
            assert all(isinstance(t, Ticket) and not t.checked for t in past)
            assert state["admitted_unchecked"] == 5
        else:
            assert all(isinstance(r, Refusal) and (r.status, r.code, r.limit) ==
                       (503, "limits_unavailable", "unavailable") for r in past)
            assert state["refused_unavailable"] == 5
        private_redis.start()                          # empty: a new Redis
        await asyncio.wait_for(limiter.health.until(True), 10)
        await limiter.quiet()
        owed = 5 if fail_mode == "open" else 0         # charged now, in this window
        assert redis.Redis.from_url(private_redis.url).hget(
            f"f:win:{window_of(clock.now)}:key", "r") == b"%d" % (50 + owed)
        assert isinstance(limiter.admit(key, 0, clock.now), Ticket)
    assert told(caplog, "store unreachable") == 1 and told(caplog, "answers again") == 1


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
async def test_exact_with_redis_stopped_then_restarted(private_redis, fail_mode):
    clock = Clock()
    [limiter] = limiters("f:", 1, clock, url=private_redis.url, mode="exact",
                         fail_mode=fail_mode, timeout="200ms")
    key = [("key", LimitValues(rpm=100, max_concurrent=10))]
    async with running(limiter):
        first = await answer(limiter, key, 0, clock.now)
        assert isinstance(first, Ticket) and first.checked
        private_redis.stop()
        during = await answer(limiter, key, 0, clock.now)   # its batch fails
        now_down = limiter.admit(key, 0, clock.now)          # known down: no Redis call
        for result in (during, now_down):
            if fail_mode == "open":
                assert isinstance(result, Ticket) and not result.checked
            else:
                assert isinstance(result, Refusal) and result.status == 503
        limiter.settle(first, 0)                             # waits for the store
        assert limiter.state()["settles_waiting"] == 1
        private_redis.start()
        await asyncio.wait_for(limiter.health.until(True), 10)
        await limiter.quiet()
        assert limiter.state()["settles_waiting"] == 0
        after = await answer(limiter, key, 0, clock.now)
        assert isinstance(after, Ticket) and after.checked


async def test_exact_admission_waits_no_longer_than_the_timeout_when_redis_hangs(prefix):
    proxy = TcpProxy("127.0.0.1", 6379)
    clock = Clock()
    [limiter] = limiters(prefix, 1, clock, url=f"redis://{proxy.url_host}/0", mode="exact",
                         fail_mode="closed", timeout="200ms")
    key = [("key", LimitValues(rpm=100))]
    try:
        async with running(limiter):
            assert isinstance(await answer(limiter, key, 0, clock.now), Ticket)
            proxy.set(HANG)
            started = time.monotonic()
            refusal = await answer(limiter, key, 0, clock.now)
            assert isinstance(refusal, Refusal) and refusal.status == 503
            assert time.monotonic() - started < 1.0
            proxy.set(FORWARD)
            await asyncio.wait_for(limiter.health.until(True), 10)
            assert isinstance(await answer(limiter, key, 0, clock.now), Ticket)
    finally:
        proxy.close()
