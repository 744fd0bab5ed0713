"""The admission chain keeps the `Stage` contract (admission/stage.py): stages run in order,
once each; None goes on, an error refuses (answered in the envelope, the exchange ended
through the listeners, later stages never asked), a future holds the request until it
resolves — then it goes on, or is refused. Real server, connection and forwarder; the client
socket is a fake transport, and the model asked for is one the fleet does not serve, so a
request that passes admission is answered by the forwarder (404) without a network."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from build_support.training import FakeTransport
from warden.admission.chain import Admission
from warden.admission.stage import NativeStage
from warden.app import build_app
from warden.edge.server import HttpConnection, HttpServer, ServerLimits
from warden.errors import Forbidden, WardenError
from warden.exchange import Exchange, Listeners, RequestIds
from warden.settings import parse_settings

BODY = b'{"model":"elsewhere","messages":[{"role":"user","content":"hi"}]}'
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json"
           b"\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))


class Heard:
    """An ExchangeListener that keeps what it was told."""

    hears_started = True

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    def started(self, exchange: Exchange) -> None:
        self.events.append(("started", exchange.status))

    def ended(self, exchange: Exchange) -> None:
        self.events.append(("ended", exchange.status))


class Stage:
    """Answers what it was given; counts its calls."""

    def __init__(self, answer: object = None) -> None:
        self.answer = answer
        self.calls = 0

    def admit(self, relay, body: dict):
        self.calls += 1
        return self.answer


class Rig:
    def __init__(self, stages: list, listeners: list | None = None) -> None:
        settings = parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9",
                                                 "models": ["m"]}],
                                   "recorder": {"enabled": False}}, {})
        gateway = build_app(settings)
        gateway.forwarder.bind(asyncio.get_running_loop())
        self.metrics = gateway.metrics  # (hears what the forwarder ends)
        self.heard = Heard()  # (hears what admission ends)
        self.admission = Admission(stages, gateway.forwarder, gateway.backends,
                                   Listeners([*(listeners or ()), self.heard]),
                                   RequestIds())
        self.writes = gateway.forwarder.writes
        server = HttpServer(lambda request, client: self.admission.handle(request, client),
                            ServerLimits(), writes=self.writes)
        self.transport = FakeTransport()
        self.client = HttpConnection(server)
        self.client.connection_made(self.transport)  # type: ignore[arg-type]

    def forwarded(self) -> int:
        return self.metrics.answered("/v1/chat/completions", 404)

    def send(self) -> None:
        self.send_body(BODY)

    def send_body(self, body: bytes) -> None:
        self.client.data_received(REQUEST.replace(BODY, body).replace(
            b"content-length: %d" % len(BODY), b"content-length: %d" % len(body)))
        self.writes.flush()

    def answer(self) -> tuple[int, dict] | None:
        self.writes.flush()
        data = b"".join(self.transport.out)
        if not data:
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), orjson.loads(body)


@pytest.mark.asyncio
async def test_stages_that_find_nothing_let_the_request_through_in_order():
    first, second = Stage(), Stage()
    rig = Rig([first, second])
    rig.send()
    status, body = rig.answer()
    assert status == 404 and "elsewhere" in body["error"]["message"]  # the forwarder's
    assert (first.calls, second.calls) == (1, 1)
    assert rig.forwarded() == 1 and rig.heard.events == []  # ended once, by the forwarder


@pytest.mark.asyncio
async def test_a_refusal_answers_ends_the_exchange_and_skips_later_stages():
    later = Stage()
    rig = Rig([Stage(Forbidden("not for you")), later])
    rig.send()
    status, body = rig.answer()
    assert (status, body["error"]["message"]) == (403, "not for you")
    assert later.calls == 0
    assert rig.heard.events == [("started", 403), ("ended", 403)] and rig.forwarded() == 0


@pytest.mark.parametrize("outcome, status", [(None, 404), (Forbidden("later, no"), 403)])
@pytest.mark.asyncio
async def test_a_future_holds_the_request_until_it_resolves(outcome, status):
    pending: asyncio.Future[WardenError | None] = asyncio.get_running_loop().create_future()
    later = Stage()
    rig = Rig([Stage(pending), later])
    rig.send()
    assert rig.answer() is None and later.calls == 0 and rig.heard.events == []
    pending.set_result(outcome)
    await asyncio.sleep(0)  # (one turn of the loop: the future's done-callbacks run)
    assert rig.answer()[0] == status
    assert later.calls == (1 if outcome is None else 0)
    if outcome is None:
        assert rig.forwarded() == 1 and rig.heard.events == []
    else:
        assert rig.heard.events == [("started", 403), ("ended", 403)] and rig.forwarded() == 0


@pytest.mark.asyncio
async def test_a_future_that_fails_still_gets_the_client_an_answer():
    pending: asyncio.Future[WardenError | None] = asyncio.get_running_loop().create_future()
    rig = Rig([Stage(pending)])
    rig.send()
    pending.set_exception(RuntimeError("a store broke"))
    await asyncio.sleep(0)
    assert rig.answer()[0] == 500
    assert rig.heard.events == [("started", 500), ("ended", 500)] and rig.forwarded() == 0


@pytest.mark.asyncio
async def test_a_client_gone_while_a_stage_waited_is_not_forwarded():
    pending: asyncio.Future[WardenError | None] = asyncio.get_running_loop().create_future()
    later = Stage()
    rig = Rig([Stage(pending), later])
    rig.send()
    rig.client.connection_lost(None)
    pending.set_result(None)
    await asyncio.sleep(0)
    assert later.calls == 0 and rig.forwarded() == 0
    assert rig.heard.events == [("started", 499), ("ended", 499)]


class Raising(Stage):
    def admit(self, relay, body: dict):
        super().admit(relay, body)
        raise RuntimeError("a stage's bug")


class Reserving(Stage):
    """Reserves something the exchange's end must give back (as the limits stage does)."""

    def admit(self, relay, body: dict):
        relay.limits_ticket = "held"
        return super().admit(relay, body)


class Settling(Heard):
    def ended(self, exchange: Exchange) -> None:
        self.events.append(("settled", exchange.limits_ticket))


@pytest.mark.asyncio
async def test_a_stage_that_raises_is_a_500_and_what_was_reserved_is_given_back(caplog):
    later, settling = Stage(), Settling()
    rig = Rig([Reserving(), Raising(), later], [settling])
    rig.send()
    assert rig.answer()[0] == 500 and later.calls == 0
    assert ("settled", "held") in settling.events
    assert rig.heard.events == [("started", 500), ("ended", 500)]
    assert "a stage raised (Raising)" in caplog.text


class Labelling(Stage):
    """Adds a header line of the gateway's to the client's answer."""

    def admit(self, relay, body: dict):
        relay.response_headers += b"x-stage: seen\r\n"
        return super().admit(relay, body)


@pytest.mark.parametrize("refusal", [None, Forbidden("no")])
@pytest.mark.asyncio
async def test_a_stages_header_lines_reach_the_client_whoever_answers(refusal):
    rig = Rig([Labelling(refusal)])
    rig.send()
    rig.answer()  # (the forwarder's 404, or the stage's refusal)
    head = b"".join(rig.transport.out).partition(b"\r\n\r\n")[0]
    assert b"\r\nx-stage: seen" in head


def test_every_shipped_stage_is_called_through_its_compiled_base():
    """(The stages above, a test's, go through the `Stage` protocol: the same chain.)"""
    settings = parse_settings({
        "backends": [{"name": "b", "url": "http://127.0.0.1:9", "models": ["m"]}],
        "recorder": {"enabled": False},
        "routing": {"policy": "prefix_aware"},
        "auth": {"mode": "required", "keys": [{"id": "k", "value": "wk-" + "x" * 40,
                                              "limits": {"rpm": 10}}]},
        "rate_limits": {"per_ip_rpm": 100},
    }, {})
    stages = build_app(settings).runtime.stages
    assert [type(stage).__name__ for stage in stages] == [
        "AddressLimitStage", "AuthStage", "LimitStage", "GuardStage", "AffinityStage"]
    assert all(isinstance(stage, NativeStage) for stage in stages)


class Probing(Stage):
    """Stands for the guard: the request was chosen as a quarantine probe, then waits."""

    def admit(self, relay, body: dict):
        relay.quarantine_probe = "ticket"
        return super().admit(relay, body)


@pytest.mark.asyncio
async def test_a_probe_refused_before_it_was_sent_gives_its_slot_back():
    """(Else no entry could ever be probed on that backend again.)"""
    pending: asyncio.Future[WardenError | None] = asyncio.get_running_loop().create_future()
    rig = Rig([Probing(pending)])
    ended: list = []
    rig.admission._forwarder._on_probe_end = ended.append   # (the quarantine's hook)
    rig.send()
    rig.client.connection_lost(None)   # its client leaves while it waits
    pending.set_result(None)
    await asyncio.sleep(0)
    assert len(ended) == 1 and ended[0].quarantine_probe == "ticket"
