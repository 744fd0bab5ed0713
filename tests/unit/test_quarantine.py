"""The quarantine: strikes per distinct death, what an incident implicates, the hot-path match,
and both stores — the JSON file and the real Redis at 127.0.0.1:6379 (a key prefix of this
test's own, deleted afterwards; no server is a failure, not a skip)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import orjson
import pytest
import redis.asyncio as redis

from warden.guard.fingerprint import exact_fingerprint, fingerprints, params_fingerprint
from warden.guard.quarantine import Entry, Policy, Quarantine, implicated
from warden.guard.quarantine_store import FileStore, RedisStore
from warden.guard.quarantine_sync import QuarantineSync

REDIS = os.environ.get("WARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
POISON = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
          "structured_outputs": {}}
PLAIN = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


T0 = time.time()  # incidents happen `at` seconds after this (entries expire from then)


def incident(incident_id: str, backend: str, at: float, *suspects: dict,
             engine_crash: bool = True) -> dict:
    return {"id": incident_id, "backend": backend, "at_unix": T0 + at,
            "suspects": list(suspects), "engine_crash": engine_crash}


def suspect(body: dict, *, in_flight: bool, unusual: list[str] | None = None) -> dict:
    return {"id": uuid.uuid4().hex, "model": "m", "endpoint": "/v1/chat/completions",
            "in_flight": in_flight, "unusual": unusual or [],
            "fingerprints": fingerprints(body)}


def test_fingerprints_ignore_what_does_not_change_the_engines_work():
    assert exact_fingerprint(POISON) == exact_fingerprint(
        {**POISON, "stream": True, "user": "someone", "seed": 3, "cache_salt": "t-tenant-b"})
    assert exact_fingerprint(POISON) != exact_fingerprint({**POISON, "max_tokens": 9})
    reworded = {**POISON, "messages": [{"role": "user", "content": "other words"}] * 3}
    assert params_fingerprint(POISON) == params_fingerprint(reworded)
    assert exact_fingerprint(POISON) != exact_fingerprint(reworded)
    assert exact_fingerprint(POISON).startswith("x:") and params_fingerprint(POISON)[:2] == "p:"


def test_one_death_is_one_strike_however_many_replicas_report_it():
    entry = Entry("x:1", "exact")
    assert entry.strike({"id": "a", "backend": "n1", "at": 100.0})
    assert not entry.strike({"id": "a", "backend": "n1", "at": 100.0})   # the same incident
    assert not entry.strike({"id": "b", "backend": "n1", "at": 101.0})   # another replica
    assert not entry.blocked
    assert entry.strike({"id": "c", "backend": "n2", "at": 102.0})       # another death
    assert entry.blocked and entry.strikes == 2


def test_an_incident_implicates_the_in_flight_and_the_unusual_only():
    flying = suspect(PLAIN, in_flight=True)
    odd = suspect(POISON, in_flight=False, unusual=["structured_outputs carries nothing"])
    bystander = suspect(PLAIN | {"max_tokens": 6}, in_flight=False)
    assert implicated([flying, odd, bystander], 16) == [flying, odd]
    assert implicated([flying, odd, bystander], 1) == [flying]


async def strike(quarantine: Quarantine, incident: dict,
                 sync: QuarantineSync | None = None) -> list:
    """What the gateway does when an incident opens: the mirror now, the store next."""
    sync = sync or QuarantineSync(quarantine, store="test", shared=False, refresh=1.0,
                                  timeout=2.0)
    entries = [sync.submit(fp, change) for fp, change in quarantine.strikes_of(incident)]
    await sync.sync_once()
    assert sync.up and not sync.pending, sync.error
    return entries


def test_file_store_strikes_survive_a_restart_and_lift(tmp_path):
    async def scenario():
        path = tmp_path / "quarantine.json"
        quarantine = Quarantine(FileStore(path))
        await quarantine.load()
        odd = suspect(POISON, in_flight=True, unusual=["structured_outputs carries nothing"])
        struck = await strike(quarantine, incident("i1", "n1", 100.0, odd))
        assert {e.kind for e in struck} == {"exact", "params"}
        reworded = {**POISON, "messages": [{"role": "user", "content": "other"}]}
        assert quarantine.match(reworded).kind == "params"     # the shape is held
        assert quarantine.match(PLAIN) is None

        restarted = Quarantine(FileStore(path))
        await restarted.load()
        assert restarted.match(POISON) is not None
        sync = QuarantineSync(restarted, store="memory", shared=False, refresh=1.0,
                              timeout=2.0)
        # Lifting one of a request's fingerprints lifts both: the request is let through.
        lifted = await sync.lift([odd["fingerprints"]["exact"], "x:nothing"])
        assert lifted == [odd["fingerprints"]["exact"], odd["fingerprints"]["params"]]
        assert restarted.match(POISON) is None and restarted.match(reworded) is None
        assert orjson.loads(path.read_bytes()) == []
    asyncio.run(scenario())


def test_entries_that_are_not_blocked_expire_and_the_store_forgets_them(tmp_path):
    async def scenario():
        now = [T0 + 1000.0]
        quarantine = Quarantine(FileStore(tmp_path / "q.json"), policy=Policy(hold_for=60),
                                clock=lambda: now[0])
        sync = QuarantineSync(quarantine, store="memory", shared=False, refresh=1.0,
                              timeout=2.0)
        await strike(quarantine, incident("i1", "n1", 1000.0, suspect(PLAIN, in_flight=True)),
                     sync)
        await strike(quarantine, incident("i2", "n1", 1000.0, suspect(POISON, in_flight=True)),
                     sync)
        blocked = quarantine.match(POISON).fingerprint
        sync.submit(blocked, quarantine.block_of(blocked, {"backend": "n1", "at": now[0],
                                                          "how": "test"}))
        now[0] = T0 + 1059.0
        assert quarantine.match(PLAIN) is not None
        now[0] = T0 + 1061.0
        assert quarantine.match(PLAIN) is None          # held: expired
        assert quarantine.match(POISON).blocked         # blocked: until lifted (block_for 0)
        await sync.sync_once()
        assert sync.expired == 1
        stored = orjson.loads((tmp_path / "q.json").read_bytes())
        assert [e["fingerprint"] for e in stored] == [blocked]
    asyncio.run(scenario())


@pytest.fixture
def prefix():
    name = f"warden-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
    yield name

    async def clean():
        client = redis.from_url(REDIS)
        keys = [key async for key in client.scan_iter(f"{name}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    asyncio.run(clean())


def test_redis_store_is_shared_by_replicas(prefix):
    async def scenario():
        one, two = Quarantine(RedisStore(REDIS, prefix)), Quarantine(RedisStore(REDIS, prefix))
        await one.load()
        await two.load()
        poison = suspect(POISON, in_flight=True)
        # two replicas report the same death at once: one strike
        await asyncio.gather(strike(one, incident("r1-a", "n1", 100.0, poison)),
                             strike(two, incident("r2-a", "n1", 100.5, poison)))
        await one.refresh()
        await two.refresh()
        held = two.match(POISON)
        assert held is not None and held.strikes == 1 and not held.blocked
        assert len(held.incidents) == 2
        await strike(one, incident("r1-b", "n2", 200.0, poison))   # a second death
        await two.refresh()
        assert two.match(POISON).blocked
        sync = QuarantineSync(two, store="redis", shared=True, refresh=1.0, timeout=2.0)
        assert await sync.lift(None) == [poison["fingerprints"]["exact"]]
        await one.refresh()
        assert one.match(POISON) is None and one.entries == {}
        await one.store.close()
        await two.store.close()
    asyncio.run(scenario())


def test_a_redis_refresh_loop_always_ends_when_cancelled(prefix):
    """The gateway stops its refresh loop by cancelling it. redis-py 8 bounds writes with
    asyncio.wait_for, which on Python 3.11 drops a cancel that arrives as the write completes;
    the loop then ran on and the gateway's stop hung. Cancel at many points: each must end."""
    lost: list[int] = []

    async def refreshing(quarantine: Quarantine) -> None:
        while not lost:  # a lost cancel ends this test's loop, not the loop itself
            await asyncio.sleep(0)
            await quarantine.refresh()

    async def scenario():
        store = RedisStore(REDIS, prefix)
        quarantine = Quarantine(store)
        await quarantine.load()
        for steps in range(200):
            task = asyncio.create_task(refreshing(quarantine))
            for _ in range(steps % 25):  # cancel it at a different point each time
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2.0)
            if not done:
                lost.append(steps)
                await asyncio.wait([task])
                break
        await store.close()
        assert not lost, f"the cancel at step {lost[0]} was lost: the loop ran on"
    asyncio.run(scenario())


def test_an_expired_content_entry_does_not_hide_a_live_shape_entry(tmp_path):
    """Until the sync loop drops it, an expired entry for a body's content stays in the
    mirror: the body's shape, still blocked, must be matched past it."""
    quarantine = Quarantine(FileStore(tmp_path / "q.json"), clock=lambda: 1000.0)
    exact, shape = exact_fingerprint(POISON), params_fingerprint(POISON)
    quarantine._mirror({exact: Entry(exact, "exact", expires=999.0),
                        shape: Entry(shape, "params", strikes=2)})
    matched = quarantine.match(POISON)
    assert matched is not None and matched.kind == "params" and matched.blocked
