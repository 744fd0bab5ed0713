"""The fleet's state under odd turns: a half-open breaker's probe from an earlier round, a
backend whose health checks stop (a reload turned them off) while it was out, a check that
finds every connection busy, a model list of `null`, a burst waiting for connections. Real
sockets where a backend answers; the breaker on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.test_admission_chain import Rig
from warden.config.schema import (
    ActiveHealthSpec,
    BackendSpec,
    BreakerSpec,
    HealthSpec,
    TimeoutsSpec,
)
from warden.fleet.backend import Backend
from warden.fleet.breaker import CLOSED, HALF_OPEN, CircuitBreaker
from warden.fleet.discovery import Discovery
from warden.fleet.registry import BackendRegistry
from warden.fleet.watch import HealthChecker
from warden.settings import parse_settings


def test_a_probe_of_an_earlier_half_open_round_ending_late_counts_no_slot_twice():
    b = CircuitBreaker(BreakerSpec(failures=1, open_for=30, probes=3))
    b.failed(0, probe=0)
    assert b.allows(30.0)
    first, late = b.sent(), b.sent()                  # two probes of the first round
    b.failed(30.5, probe=first)                       # one fails: open again
    assert b.allows(61.0) and b.state == HALF_OPEN    # a second round
    b.succeeded(probe=late)                           # the first round's other, late
    assert b.probing == 0
    assert b.sent() and b.sent() and b.sent() and not b.allows(61.0)   # still 3 at once


def test_a_probe_of_a_breaker_a_reload_replaced_is_not_the_new_ones():
    """A reload turns the breaker off, another back on: the new breaker's rounds go on from
    the old one's, so a probe still in flight from before is not one of its own."""
    b = backend()
    for t in range(5):   # (the default: 5 failures in a row open it)
        b.failed(float(t), 0, "answered 500")
    assert b.breaker is not None and b.breaker.allows(100.0)
    old_probe = b.sent()
    spec, timeouts = b.spec, TimeoutsSpec()
    b.reconfigure(spec, timeouts, HealthSpec(breaker={"enabled": False}), 101.0)
    b.reconfigure(spec, timeouts, HealthSpec(), 102.0)
    for t in range(5):
        b.failed(103.0 + t, 0, "answered 500")
    assert b.breaker.allows(200.0) and b.breaker.round != old_probe
    b.succeeded(201.0, old_probe)
    assert b.breaker.probing == 0 and b.breaker.successes == 0


def test_a_late_success_of_an_earlier_round_does_not_close_it():
    b = CircuitBreaker(BreakerSpec(failures=1, open_for=30, probes=2))
    b.failed(0, probe=0)
    assert b.allows(30.0)
    first, late = b.sent(), b.sent()
    b.failed(30.5, probe=first)                       # the backend failed since
    assert b.allows(61.0)
    probe = b.sent()
    b.succeeded(probe=late)                           # judged the backend before it failed
    b.abandoned(probe=late)                           # (nor frees a slot of this round)
    assert b.state == HALF_OPEN and b.successes == 0 and b.probing == 1
    b.succeeded(probe=probe)
    b.succeeded(probe=b.sent())
    assert b.state == CLOSED


def backend(port: int = 9) -> Backend:
    return Backend(BackendSpec(name="b", url=f"http://127.0.0.1:{port}"), TimeoutsSpec())


@pytest.mark.asyncio
async def test_a_backend_no_longer_checked_is_not_held_out_by_its_last_verdict():
    checker, out = HealthChecker(ActiveHealthSpec(interval=60)), backend()
    checker.follow([out])
    out.set_healthy(False, 0.0, "health check: refused")
    checker.follow(())   # (a reload with `health.active.enabled: false`)
    assert out.healthy
    await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_a_check_that_finds_every_connection_busy_gives_no_verdict():
    busy = backend()
    busy.pool.reconfigure(max_connections=1, connect_timeout=1, pool_timeout=0.01,
                          keepalive_timeout=60, tls=None)
    busy.pool.open_count = 1   # (its one connection streams a long answer)
    checker = HealthChecker(ActiveHealthSpec(unhealthy_after=1))
    await checker.check(busy)
    assert busy.healthy and busy.last_error is None


@pytest.mark.asyncio
async def test_a_model_list_of_null_is_no_model_list_and_no_crash():
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"data\":null}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = parse_settings({"backends": [{"name": "b", "url": f"http://127.0.0.1:{port}"}],
                               "recorder": {"enabled": False}}, {})
    registry = BackendRegistry(settings)
    [odd] = list(registry)
    assert await Discovery(registry, settings).refresh(odd) is False
    assert not odd.models
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_a_request_waiting_for_a_connection_counts_in_flight_on_its_backend():
    """(The fleet's one backend refuses connections: the request is counted from its choice
    until its connection fails, then not.)"""
    rig = Rig([])
    [chosen] = list(rig.admission._backends)
    rig.send_body(b'{"model":"m","messages":[{"role":"user","content":"hi"}]}')
    assert chosen.in_flight == 1   # choosing it; the connection is not made yet
    async with asyncio.timeout(5):
        while rig.answer() is None:
            await asyncio.sleep(0.01)
    assert chosen.in_flight == 0 and rig.answer()[0] >= 500
