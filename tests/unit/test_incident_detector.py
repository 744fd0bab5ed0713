"""Which signals make an incident: every death of a backend that was alive is one (crash,
restart, crash again: two), a backend down since the gateway started is none, and an incident
says whether the engine itself said it died."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from warden.forensics.incidents import IncidentDetector, is_engine_crash
from warden.stream.observer import Ending


def relay(status: int, ending: str = Ending.UPSTREAM_COMPLETE, body: bytes = b"") -> object:
    return SimpleNamespace(backend="n1", status=status, ending=ending, head_sent=True,
                           observer=None, captured=[body] if body else None,
                           request_id=b"r-%d" % status, request=None, forwarded_body=None,
                           sent_at=0.0, endpoint="/v1/chat/completions", model="m",
                           stream=False, tenant="t", principal="k")


def detector(tmp_path) -> tuple[IncidentDetector, list[dict]]:
    opened: list[dict] = []
    found = IncidentDetector(tmp_path, lambda backend: [], on_opened=opened.append)
    return found, opened


def test_a_backend_down_when_the_gateway_starts_is_not_an_engine_death(tmp_path):
    found, opened = detector(tmp_path)
    found.connect_failed("n1", 1.0, "discovery poll: connection refused")
    found.connect_failed("n1", 2.0)
    assert opened == [] and "n1" in found.down
    assert not (tmp_path / "incidents").exists()
    found.alive_again("n1", "health check passed")  # it came up: its next death counts
    found.connect_failed("n1", 3.0)
    assert len(opened) == 1


def test_every_death_of_a_live_backend_is_an_incident(tmp_path):
    found, opened = detector(tmp_path)
    found.reachable("n1")  # discovery at start
    engine_dead = b'{"error": {"message": "EngineCore encountered an issue"}}'
    found.exchange_ended(relay(500, body=engine_dead), 1.0)
    assert len(opened) == 1 and opened[0]["engine_crash"]
    assert opened[0]["tenants"] == ["t"]  # (whose requests the suspects were)
    found.exchange_ended(relay(500, body=engine_dead), 5.0)  # still dead: the same death
    found.connect_failed("n1", 6.0)
    assert len(opened) == 1
    found.reachable("n1")  # its API server lists models: not proof its engine lives
    found.exchange_ended(relay(500, body=engine_dead), 7.0)
    assert len(opened) == 1
    found.alive_again("n1", "health check passed")  # restarted, and healthy
    found.exchange_ended(relay(500, body=engine_dead), 9.0)  # crash again
    assert len(opened) == 2
    found.restarted("n1", 12.0, "restarted (its counters went backwards)")  # back again
    found.exchange_ended(relay(0, Ending.UPSTREAM_LOST), 14.0)  # and dead a third time
    assert len(opened) == 3 and not opened[2]["engine_crash"]


async def test_an_incident_learns_the_engine_said_it_died_after_its_first_signal(tmp_path):
    found, opened = detector(tmp_path)
    found.bind(asyncio.get_running_loop())  # (open for `settle` seconds: signals join it)
    found.reachable("n1")
    found.exchange_ended(relay(0, Ending.UPSTREAM_LOST), 1.0)  # a stream cut first
    assert len(opened) == 1 and not opened[0]["engine_crash"]
    engine_dead = b'{"error": {"message": "EngineDeadError"}}'
    found.exchange_ended(relay(500, body=engine_dead), 1.2)  # then the poison's own 500
    assert len(opened) == 2 and opened[1]["id"] == opened[0]["id"]
    assert opened[1]["engine_crash"]
    found.close_all()


def test_what_counts_as_the_engines_own_word():
    assert is_engine_crash("engine-dead 500")
    assert is_engine_crash("engine error event in the stream")
    assert is_engine_crash("health check failed (GET /health answered 503)")
    assert not is_engine_crash("health check failed (connection refused)")
    assert not is_engine_crash("response cut mid-way")
    assert not is_engine_crash("connection dropped before the answer")
    assert not is_engine_crash("restarted (its counters went backwards)")


def test_a_request_in_flight_long_since_is_a_suspect_though_no_longer_among_the_recent(
        tmp_path):
    """The killer sent first (a long prefill), then more requests than the recent ones keep:
    it is still in flight when the engine dies, so it is a suspect."""
    killer = relay(0, Ending.UPSTREAM_LOST)
    killer.request_id, killer.sent_at = b"the-killer", 0.5
    opened: list[dict] = []
    found = IncidentDetector(tmp_path, lambda backend: [killer], on_opened=opened.append)
    found.reachable("n1")
    for n in range(100):   # (more than the recent ones hold)
        later = relay(200)
        later.request_id, later.sent_at = b"later-%d" % n, 1.0
        found.recent_of("n1").append(later)
    found.connect_failed("n1", 2.0)
    assert "the-killer" in {s["id"] for s in opened[0]["suspects"]}


def test_two_suspects_sharing_a_clients_request_id_are_both_kept(tmp_path):
    twins = [relay(0, Ending.UPSTREAM_LOST), relay(0, Ending.UPSTREAM_LOST)]
    for twin in twins:
        twin.request_id = b"reused"
    opened: list[dict] = []
    found = IncidentDetector(tmp_path, lambda backend: twins, on_opened=opened.append)
    found.reachable("n1")
    found.connect_failed("n1", 2.0)
    assert [s["id"] for s in opened[0]["suspects"]] == ["reused", "reused"]
