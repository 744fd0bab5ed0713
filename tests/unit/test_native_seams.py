"""Each per-request seam takes its part through a compiled base, once, where it is built: the
gateway's own part as it is, anything else (a test's, a plugin's) behind an adapter that
forwards each call to the protocol, so no call site asks which kind it has."""

from __future__ import annotations

from tests.unit.test_relay import REQUEST, FakeClient, make
from warden.admission.stage import NativeStage, StageAdapter, native
from warden.config.limits_schema import RateLimitSpec
from warden.edge.responding import NativeWriter, WriterAdapter, native_writer
from warden.exchange import ListenerAdapter, Listeners, NativeListener
from warden.proxy.relay import Relay
from warden.tenancy.answers import Quota, Ticket
from warden.tenancy.limiter import build_limiter
from warden.tenancy.native import LimiterAdapter
from warden.tenancy.native import native as native_limiter
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode, NativeSink, SinkAdapter


class Recording:
    """Any protocol's part that is not a compiled one: it records what it is asked, and
    answers from `answers` (None for a method not in it)."""

    def __init__(self, answers: dict | None = None) -> None:
        self.calls: list[tuple] = []
        self.answers = answers or {}
        self.refusals: dict = {}
        self.hears_started = False

    def __getattr__(self, name):
        def method(*args):
            self.calls.append((name, *args))
            return self.answers.get(name)
        return method


def test_a_native_part_is_taken_as_it_is():
    """(The shipped stages are native: test_admission_chain; the relay is a sink.)"""
    limiter = build_limiter(RateLimitSpec(store="memory"))
    assert native_limiter(limiter) is limiter
    stage = StageAdapter(Recording())
    assert native(stage) is stage
    writer = WriterAdapter(FakeClient())
    assert native_writer(writer) is writer
    relay, _, _, _ = make()
    assert isinstance(relay, NativeSink)


def test_any_other_part_is_wrapped_and_every_call_forwarded():
    """(Real arguments and answers: compiled, the adapters check their types.)"""
    relay = Relay(REQUEST, FakeClient(), b"r1", None)  # type: ignore[arg-type]
    ticket = Ticket(1, 0, Quota())
    a_stage, a_limiter = Recording(), Recording({"admit": ticket})
    a_writer, a_sink = Recording(), Recording({"on_head": BodyMode.RAW})
    stage = native(a_stage)
    assert isinstance(stage, StageAdapter) and isinstance(stage, NativeStage)
    assert stage.admit(relay, {"body": 1}) is None
    limiter = native_limiter(a_limiter)  # type: ignore[arg-type]
    assert isinstance(limiter, LimiterAdapter) and limiter.refusals is a_limiter.refusals
    assert limiter.admit([], 5, 1.0, 2) is ticket
    limiter.settle(ticket, 3, None, 4)
    writer = native_writer(a_writer)  # type: ignore[arg-type]
    assert isinstance(writer, WriterAdapter) and isinstance(writer, NativeWriter)
    writer.start_raw(b"head")
    writer.write(b"data")
    writer.end_response(b"end")
    sink = SinkAdapter(a_sink)  # type: ignore[arg-type]
    assert sink.on_head(200, b"h") == BodyMode.RAW
    sink.on_raw(b"r", True)
    sink.observe_piece(b"p")
    sink.on_body(b"b")
    sink.flush()
    sink.on_complete()
    sink.on_lost("gone")
    assert a_stage.calls == [("admit", relay, {"body": 1})]
    assert a_limiter.calls == [("admit", [], 5, 1.0, 2), ("settle", ticket, 3, None, 4)]
    assert a_writer.calls == [("start_raw", b"head"), ("write", b"data"),
                              ("end_response", b"end")]
    assert a_sink.calls == [("on_head", 200, b"h"), ("on_raw", b"r", True),
                            ("observe_piece", b"p"), ("on_body", b"b"), ("flush",),
                            ("on_complete",), ("on_lost", "gone")]


def test_a_connection_wraps_a_sink_that_is_not_native_and_a_relay_a_client():
    conn = UpstreamConnection()
    conn.connection_made(FakeTransport())
    fake = Recording()
    conn.send([b"GET / HTTP/1.1\r\n\r\n"], fake)  # type: ignore[arg-type]
    conn.connection_lost(None)
    assert fake.calls == [("on_lost", "backend closed the connection")]
    relay = Relay(REQUEST, FakeClient(), b"r1", None)  # type: ignore[arg-type]
    assert isinstance(relay._writer, WriterAdapter)


class FakeTransport:
    def writelines(self, data):
        pass

    def abort(self):
        pass


def test_listeners_wrap_one_that_is_not_native_and_keep_what_it_hears():
    quiet, hearing = Recording(), Recording()
    hearing.hears_started = True
    shipped = NativeListener()
    shipped.hears_started = False
    listeners = Listeners([shipped, quiet, hearing])
    assert listeners.enders[0] is shipped
    assert all(isinstance(one, ListenerAdapter) for one in listeners.enders[1:])
    assert [one.listener for one in listeners.starters] == [hearing]  # type: ignore[attr-defined]
    relay = Relay(REQUEST, FakeClient(), b"r1", None)  # type: ignore[arg-type]
    listeners.ended(relay)  # (never sent: its start goes with its end)
    assert quiet.calls == [("ended", relay)]
    assert hearing.calls == [("started", relay), ("ended", relay)]
