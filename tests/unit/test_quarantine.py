"""The quarantine: strikes per distinct death, what an incident implicates, the hot-path match,
and both stores — the JSON file and the real Redis at 127.0.0.1:6379 (a key prefix of this
test's own, deleted afterwards; no server is a failure, not a skip)."""

from __future__ import annotations

import asyncio
import os
import uuid

import orjson
import pytest
import redis.asyncio as redis

from warden.config.schema import BackendSpec, GuardSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.guard.fingerprint import exact_fingerprint, fingerprints, params_fingerprint
from warden.guard.guard import Guard
from warden.guard.quarantine import Entry, Quarantine, implicated
from warden.guard.quarantine_store import FileStore, RedisStore

REDIS = os.environ.get("WARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
POISON = {"model": "m", "messages": [{"role": "user", "content": "hi"}],
          "structured_outputs": {}}
PLAIN = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def incident(incident_id: str, backend: str, at: float, *suspects: dict) -> dict:
    return {"id": incident_id, "backend": backend, "at_unix": at, "suspects": list(suspects)}


def suspect(body: dict, *, in_flight: bool, unusual: list[str] | None = None) -> dict:
    return {"id": uuid.uuid4().hex, "model": "m", "endpoint": "/v1/chat/completions",
            "in_flight": in_flight, "unusual": unusual or [],
            "fingerprints": fingerprints(body)}


def test_fingerprints_ignore_what_does_not_change_the_engines_work():
    assert exact_fingerprint(POISON) == exact_fingerprint(
        {**POISON, "stream": True, "user": "someone", "seed": 3})
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


def test_file_store_strikes_survive_a_restart_and_lift(tmp_path):
    async def scenario():
        path = tmp_path / "quarantine.json"
        quarantine = Quarantine(FileStore(path))
        await quarantine.load()
        odd = suspect(POISON, in_flight=True, unusual=["structured_outputs carries nothing"])
        struck = await quarantine.implicate(incident("i1", "n1", 100.0, odd))
        assert {e.kind for e in struck} == {"exact", "params"}
        reworded = {**POISON, "messages": [{"role": "user", "content": "other"}]}
        assert quarantine.match(reworded).kind == "params"     # the shape is held
        assert quarantine.match(PLAIN) is None

        restarted = Quarantine(FileStore(path))
        await restarted.load()
        assert restarted.match(POISON) is not None
        lifted = await restarted.lift([odd["fingerprints"]["exact"], "x:nothing"])
        assert lifted == [odd["fingerprints"]["exact"]]
        assert restarted.match(POISON).kind == "params"
        assert await restarted.lift(None) == [odd["fingerprints"]["params"]]
        assert restarted.match(POISON) is None and orjson.loads(path.read_bytes()) == []
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
        await asyncio.gather(one.implicate(incident("r1-a", "n1", 100.0, poison)),
                             two.implicate(incident("r2-a", "n1", 100.5, poison)))
        await one.refresh()
        await two.refresh()
        held = two.match(POISON)
        assert held is not None and held.strikes == 1 and not held.blocked
        assert len(held.incidents) == 2
        await one.implicate(incident("r1-b", "n2", 200.0, poison))   # a second death
        await two.refresh()
        assert two.match(POISON).blocked
        assert await two.lift(None) == [poison["fingerprints"]["exact"]]
        await one.refresh()
        assert one.match(POISON) is None and one.entries == {}
        await one.store.close()
        await two.store.close()
    asyncio.run(scenario())


def test_the_guard_holds_routes_to_a_canary_and_blocks(tmp_path):
    async def scenario():
        quarantine = Quarantine(FileStore(tmp_path / "q.json"))
        await quarantine.load()
        await quarantine.implicate(incident("i1", "n1", 100.0, suspect(PLAIN, in_flight=True)))
        guard = Guard(GuardSpec(), quarantine)
        spec = {"url": "http://127.0.0.1:18001"}
        plain = Backend(BackendSpec(name="plain", **spec), TimeoutsSpec())
        canary = Backend(BackendSpec(name="canary", canary=True,
                                     url="http://127.0.0.1:18002"), TimeoutsSpec())
        raw = orjson.dumps(PLAIN)
        routed = guard.admit("/v1/chat/completions", "m", dict(PLAIN), raw, [plain, canary])
        assert routed.only == {"canary"} and routed.rejection is None
        held = guard.admit("/v1/chat/completions", "m", dict(PLAIN), raw, [plain])
        assert held.rejection is not None and held.rejection.status == 403
        assert "i1" in held.rejection.message and "warden quarantine lift" in \
            held.rejection.message
        await quarantine.implicate(incident("i2", "n2", 500.0, suspect(PLAIN, in_flight=True)))
        blocked = guard.admit("/v1/chat/completions", "m", dict(PLAIN), raw, [plain, canary])
        assert blocked.rejection is not None and "fleet-wide" in blocked.rejection.message
        other = {**PLAIN, "max_tokens": 6}
        assert guard.admit("/v1/chat/completions", "m", other, orjson.dumps(other),
                           [plain]) is None
        assert guard.decisions[("quarantine", "route", "enforce")] == 1
        assert guard.decisions[("quarantine", "reject", "enforce")] == 2
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
