"""The pieces of a config reload: which backends carry over, what waits for a restart, the
watch loops following the fleet, a retired pool, the file watcher (no network)."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading

import pytest
import trustme

from tests.waiting import until
from warden.config import parse_settings
from warden.config.watcher import ConfigFileWatcher
from warden.fleet.backend import UNLIMITED
from warden.fleet.watch import BackendLoops
from warden.runtime import build_runtime, restart_only_changes
from warden.upstream.connection import UpstreamConnection
from warden.upstream.pool import ConnectionPool


def settings(*backends: dict, **rest):
    return parse_settings({"backends": list(backends), **rest}, {})


A = {"name": "a", "url": "http://127.0.0.1:9001"}
B = {"name": "b", "url": "http://127.0.0.1:9002"}
C = {"name": "c", "url": "http://127.0.0.1:9003"}


def test_a_backend_kept_by_name_and_url_keeps_its_state_and_takes_new_settings():
    first = build_runtime(settings(A, B, health={"breaker": {"failures": 1}}), None)
    a, b = first.backends.named("a"), first.backends.named("b")
    a.in_flight, a.requests_sent = 3, 40
    a.failed(100.0, False, "answered 500")  # opens its breaker (one failure is enough)
    a.set_draining(True, 100.0)
    assert a.breaker is not None and a.breaker.state == "open"

    second = build_runtime(settings({**A, "weight": 5, "max_in_flight": 8}, C,
                                    health={"breaker": {"failures": 9}}), None, first)
    assert second.backends.named("a") is a
    assert (a.in_flight, a.requests_sent, a.draining, a.breaker.state) == (3, 40, True, "open")
    assert a.weight == 5 and a.max_in_flight == 8 and a.breaker.spec.failures == 9
    assert [x.name for x in second.backends.added_since(first.backends)] == ["c"]
    assert second.backends.removed_since(first.backends) == [b]


def test_a_reload_that_cannot_be_built_leaves_the_fleet_it_had(tmp_path):
    """A CA bundle that stopped loading between the config's check and the build: the kept
    backends took none of the new settings (they took some, then it raised)."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(trustme.CA().cert_pem.bytes())
    https = [{"name": n, "url": f"https://127.0.0.1:{9010 + i}", "tls_ca": str(ca)}
             for i, n in enumerate("xyz")]
    first = build_runtime(settings(A, *https), None)
    contexts = {id(first.backends.named(n).pool.tls) for n in "xyz"}
    assert len(contexts) == 1  # one context for the fleet's one CA, not one per backend
    changed = settings({**A, "weight": 5}, *https)
    ca.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        build_runtime(changed, None, first)
    assert first.backends.named("a").weight == 100  # (the default)


def test_same_name_at_a_new_url_is_a_new_engine():
    first = build_runtime(settings(A), None)
    second = build_runtime(settings({**A, "url": "http://127.0.0.1:9999"}), None, first)
    moved = second.backends.named("a")
    assert moved is not first.backends.named("a") and moved.address == "127.0.0.1:9999"
    assert second.backends.removed_since(first.backends) == [first.backends.named("a")]


def test_reconfigure_can_turn_the_breaker_off_and_lift_a_cap():
    first = build_runtime(settings({**A, "max_in_flight": 2}), None)
    second = build_runtime(settings(A, health={"breaker": {"enabled": False}}), None, first)
    a = second.backends.named("a")
    assert a.breaker is None and a.max_in_flight == UNLIMITED


def test_guard_counters_carry_over_a_reload():
    first = build_runtime(settings(A), None)
    assert first.guard is not None
    first.guard.decisions["schema", "reject", "enforce"] += 2
    second = build_runtime(settings(A, guard={"mode": "dry_run"}), None, first)
    assert second.guard is not None and second.guard.mode == "dry_run"
    assert second.guard.decisions["schema", "reject", "enforce"] == 2


def test_restart_only_changes_name_what_a_reload_cannot_apply():
    base = settings(A)
    assert restart_only_changes(base, settings(A, routing={"policy": "round_robin"})) == []
    assert restart_only_changes(base, settings(A, listen="127.0.0.1:9")) == ["listen"]
    assert restart_only_changes(base, settings(A, loop_probe={"interval": "1ms"})) \
        == ["loop_probe"]
    assert restart_only_changes(base, settings(A, recorder={"response": "full"})) \
        == ["recorder"]
    assert restart_only_changes(base, settings(A, guard={"quarantine": {"store": "redis"}})) \
        == ["guard.quarantine (its store)"]
    # The quarantine's own mode is read per request: it reloads.
    assert restart_only_changes(
        base, settings(A, guard={"quarantine": {"mode": "dry_run"}})) == []


def test_sample_rates_reload_and_the_rest_of_logs_and_traces_waits():
    on = {"access_log": {"enabled": True, "sample": 0.5}}
    traced = settings(A, logging=on, tracing={"enabled": True, "sample": 0.5})
    assert restart_only_changes(traced, settings(
        A, logging={"access_log": {"enabled": True, "sample": 0.01}},
        tracing={"enabled": True, "sample": 0.01})) == []
    assert restart_only_changes(traced, settings(A)) == []  # off: their rates are 0
    assert restart_only_changes(settings(A), traced) == [
        "logging.access_log.enabled (turned on)", "tracing.enabled (turned on)"]
    assert restart_only_changes(traced, settings(
        A, logging={**on, "format": "json"},
        tracing={"enabled": True, "sample": 0.5, "endpoint": "http://otel:4318/v1/traces"})) \
        == ["logging (format, level, queue_size)",
            "tracing (its exporter: endpoint, headers, service_name, timeout, queue_size)"]


def test_backend_loops_follow_the_fleet():
    async def scenario() -> list:
        steps: list[str] = []
        stepped = asyncio.Event()

        async def step(backend) -> None:
            steps.append(backend.name)
            stepped.set()

        runtime = build_runtime(settings(A, B), None)
        a, b = runtime.backends.named("a"), runtime.backends.named("b")
        loops = BackendLoops(step, lambda: 3600.0)
        assert loops.follow([a, b]) == []
        while len(steps) < 2:
            stepped.clear()
            await stepped.wait()
        gone = loops.follow([b])   # b keeps its loop (no second step); a's loop ends
        await asyncio.sleep(0)
        await loops.stop()
        return [sorted(steps), gone == [a]]

    assert asyncio.run(scenario()) == [["a", "b"], True]


def test_a_retired_pool_closes_connections_as_they_come_back():
    pool = ConnectionPool("127.0.0.1", 9, max_connections=4, connect_timeout=1,
                          pool_timeout=1, keepalive_timeout=60)
    busy, idle = UpstreamConnection(), UpstreamConnection()
    for conn in (busy, idle):
        conn.transport = Transport()  # (a seam: no socket needed to see it closed)
        conn.reusable = True
    pool.open_count = 2
    pool.release(idle, now=0.0)
    pool.retire()
    assert pool.open_count == 1 and idle.closed   # the idle one at once
    pool.release(busy, now=0.0)                   # the busy one when its request ends
    assert pool.open_count == 0 and busy.closed


def test_the_file_watcher_sees_a_change_and_not_a_mere_stat(tmp_path):
    path = tmp_path / "warden.yaml"
    path.write_text("a: 1\n")

    async def scenario() -> int:
        changed = asyncio.Event()
        seen = 0

        async def on_change() -> None:
            nonlocal seen
            seen += 1
            changed.set()

        spec = settings(A, reload={"interval": "10ms"}).reload
        watcher = ConfigFileWatcher(path, lambda: spec, on_change)
        task = asyncio.get_running_loop().create_task(watcher.run())
        os.replace(_written(tmp_path / "new.yaml", "a: 2\n"), path)  # an atomic save
        await asyncio.wait_for(changed.wait(), 10)
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == 1


class Transport:
    def abort(self) -> None:
        pass


def _written(path, text: str):
    path.write_text(text)
    return path


def test_the_watcher_acts_on_a_change_only_once_the_file_has_stopped_changing(tmp_path):
    path = _written(tmp_path / "warden.yaml", "a: 1\n")
    spec = settings(A).reload
    watcher = ConfigFileWatcher(path, lambda: spec, _never_called)
    assert watcher.settled_change() is False  # unchanged
    path.write_text("")  # a truncate-then-write caught half-way: the empty file...
    assert watcher.settled_change() is False
    path.write_text("a: 2\nb: 3\n")  # ...then the whole text: still changing
    assert watcher.settled_change() is False
    assert watcher.settled_change() is True  # the same identity twice: settled, act once
    assert watcher.settled_change() is False
    path.unlink()  # gone (a rename under way) is not a change
    assert watcher.settled_change() is False


async def _never_called() -> None:
    raise AssertionError("the watcher's on_change is not called by settled_change")


def test_two_reloads_at_once_leave_the_newest_file_running(tmp_path, monkeypatch):
    """A SIGHUP's reload still validating v1 when the watcher's reads v2: v2 is the one left
    running (each used to swap in as soon as it was valid: v2, then v1 over it)."""
    from types import SimpleNamespace

    from warden.app import reload as reload_module

    source = tmp_path / "warden.yaml"
    source.write_text("backends: [{name: v1, url: 'http://127.0.0.1:9001'}]\n")
    slow, validating = threading.Event(), threading.Event()
    validate = reload_module.settings_from_yaml

    def settings_from_yaml(text, path):
        if "v1" in text:
            validating.set()
            slow.wait(10)   # (v1 is slow to validate)
        return validate(text, path, {})

    monkeypatch.setattr(reload_module, "settings_from_yaml", settings_from_yaml)
    gateway = SimpleNamespace(backends=[], policy=SimpleNamespace(name="p"))
    reloader = reload_module.Reloader(gateway, settings(A), source)  # type: ignore[arg-type]
    applied: list[str] = []

    async def apply(settings, why):
        applied.append(settings.backends[0].name)
        return []

    reloader._reload = apply  # type: ignore[method-assign]

    async def scenario() -> None:
        first = asyncio.ensure_future(reloader.reload_source("SIGHUP"))
        await until(validating.is_set, what="v1 read and being validated")
        source.write_text("backends: [{name: v2, url: 'http://127.0.0.1:9001'}]\n")
        second = asyncio.ensure_future(reloader.reload_source("the file changed", True))
        # (It waits its turn, or it swaps v2 in meanwhile: either, then v1 may finish.)
        await until(lambda: second.done() or reloader._reloading._waiters,
                    what="the second reload to wait or to finish")
        slow.set()
        await asyncio.gather(first, second)

    asyncio.run(scenario())
    assert applied[-1] == "v2"
