"""The relay ends an exchange exactly once, whatever order the events arrive in (seed 002).
Fakes stand at the two seams: the client connection (the relay's `ClientStream`) and the
upstream connection's socket (under a real `UpstreamConnection`)."""

from __future__ import annotations

import pytest

from warden.config.schema import BackendSpec, TimeoutsSpec
from warden.edge.request import HttpRequest
from warden.fleet.backend import Backend
from warden.proxy.relay import Relay
from warden.stream.observer import Ending, Verdict
from warden.stream.usage_strip import UsageStripper
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode

BACKEND = Backend(BackendSpec(name="b", url="http://127.0.0.1:1"), TimeoutsSpec())
REQUEST = HttpRequest(b"POST", b"/v1/chat/completions", {}, [], b"{}", True, "127.0.0.1",
                      0.0)

SSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
       b"transfer-encoding: chunked\r\n")
JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"


class FakeClient:
    def __init__(self) -> None:
        self.watcher = None
        self.closed = False
        self.writing_paused = False
        self.http11 = True
        self.raw = False
        self.head: tuple | None = None
        self.written: list[bytes] = []
        self.flushes = 0
        self.ended = 0
        self.aborted = False

    def start_response(self, status, headers, length=None):
        self.head = (status, headers, length)

    def start_raw(self, head):
        self.head = (head,)
        self.raw = True

    def write(self, data):
        self.written.append(data)

    def flush(self):
        self.flushes += 1

    def end_response(self, data=b""):
        if data:
            self.written.append(data)
        self.ended += 1

    def abort(self):
        self.aborted = True


class UpstreamSocket:
    """The transport under the upstream connection: what was sent, paused, aborted."""

    def __init__(self) -> None:
        self.sent: list[bytes] | None = None
        self.paused = False
        self.aborted = False

    def writelines(self, parts):
        self.sent = list(parts)

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def abort(self):
        self.aborted = True


def upstream_connection() -> UpstreamConnection:
    conn = UpstreamConnection()
    conn.connection_made(UpstreamSocket())
    return conn


class Ends(list):
    """The relay's owner: records every end it is told of; there must be exactly one."""

    def __init__(self, timeouts: TimeoutsSpec, capture: int = 0):
        super().__init__()
        self.timeouts = timeouts
        self.capture = capture
        self.expose_upstream = True
        self.scrub_errors = True
        self.writes = None  # requests written at once

    def relay_ended(self, relay, ending):
        assert ending == relay.ending
        self.append(ending)


def make(first_byte: float = 60.0, idle: float = 60.0, http11: bool = True):
    client, upstream = FakeClient(), upstream_connection()
    client.http11 = http11
    ends = Ends(TimeoutsSpec(first_byte=first_byte, idle=idle))
    relay = Relay(REQUEST, client, b"r1", ends)
    relay.send(BACKEND, upstream, [b"POST / HTTP/1.1\r\n\r\n", b""], 100.0)
    return relay, client, upstream, ends


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def deliver(relay: Relay, payload: bytes, last: bool = False) -> None:
    """One read of an event stream, as the upstream connection hands it over: de-chunked
    pieces first (to `observe_piece` in raw mode, else `on_body`), then (raw mode) the read
    as it came, or (decoded) the end."""
    if relay.raw:
        relay.observe_piece(payload)
        relay.on_raw(chunk(payload) + (b"0\r\n\r\n" if last else b""), last)
    else:
        relay.on_body(payload)
        if last:
            relay.on_complete()


# Both ways an event stream is relayed: raw to an HTTP/1.1 client, re-framed to HTTP/1.0.
modes = pytest.mark.parametrize("http11", [True, False], ids=["raw", "decoded"])


@modes
def test_every_later_event_is_ignored_after_the_end(http11):
    relay, client, upstream, ends = make(http11=http11)
    assert relay.on_head(200, SSE) == (BodyMode.RAW_OBSERVED if http11 else BodyMode.DECODED)
    deliver(relay, b"data: [DONE]\n\n", last=True)
    # Late and duplicate events, in every order a racing transport could produce them.
    relay.on_complete()
    relay.on_lost("late reset")
    # (a raw stream's pieces go straight to its observer, which the upstream connection
    # forgets when the response ends: test_upstream_connection covers that side)
    relay.on_raw(chunk(b"data: stray\n\n"), True)
    relay.on_body(b"data: stray\n\n")
    relay.on_client_lost()
    relay.cancel()
    assert ends == [Ending.UPSTREAM_COMPLETE] and relay.observer.events == 1
    relayed = chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n" if http11 else b"data: [DONE]\n\n"
    assert client.ended == 1 and client.written == [relayed]
    assert not upstream.closed and not client.aborted
    assert client.watcher is None


@modes
def test_a_client_leaving_after_done_had_the_whole_stream(http11):
    """The openai SDK stops at `[DONE]` and may close before the chunked terminator comes:
    the upstream request is closed, but the stream was complete."""
    relay, _, upstream, ends = make(http11=http11)
    relay.on_head(200, SSE)
    deliver(relay, b'data: {"choices": [{"finish_reason": "stop"}]}\n\n')
    deliver(relay, b"data: [DONE]\n\n")
    relay.on_client_lost()
    assert ends == [Ending.CLIENT_LOST] and upstream.closed
    assert relay.observer.verdict(Ending.CLIENT_LOST) == Verdict.COMPLETE
    assert relay.observer.finish_reasons == ["stop"]


@modes
def test_client_leaving_closes_the_upstream_request(http11):
    relay, client, upstream, ends = make(http11=http11)
    assert client.watcher is relay
    relay.on_head(200, SSE)
    relay.on_client_lost()
    deliver(relay, b"data: {}\n\n", last=True)
    assert ends == [Ending.CLIENT_LOST]
    assert upstream.closed
    assert client.written == [] and client.ended == 0


@modes
def test_backend_lost_mid_stream_sends_one_error_event_and_ends_the_stream(http11):
    relay, client, _, ends = make(http11=http11)
    relay.on_head(200, SSE)
    deliver(relay, b"data: {}\n\n")
    relay.on_lost("backend closed the connection")
    relay.on_lost("again")
    assert ends == [Ending.UPSTREAM_LOST]
    assert len(client.written) == 2 and not client.aborted and client.ended == 1
    error = client.written[1]
    if http11:  # a chunk of its own after the backend's chunks, then the last chunk
        size, _, rest = error.partition(b"\r\n")
        assert rest.endswith(b"\r\n0\r\n\r\n") and int(size, 16) == len(rest) - 7
        error = rest[:-7]
    assert error.startswith(b'data: {"error":') and error.endswith(b"}\n\n")
    assert b"backend closed the connection" in error


@pytest.mark.parametrize("relayed", [
    b"b\r\ndata: {}\n",            # inside an event
    b"b\r\ndata: {}\n\n",          # the event ended, its chunk did not
    b"b\r\ndata: {}\n\n\r\n5\r\n",  # the next chunk's size line went out
])
def test_raw_stream_cut_inside_a_chunk_resets_the_client(relayed):
    relay, client, _, ends = make()
    relay.on_head(200, SSE)
    relay.observe_piece(relayed.split(b"\r\n")[1])
    relay.on_raw(relayed, False)
    relay.on_lost("backend closed the connection")
    assert ends == [Ending.UPSTREAM_LOST]
    assert client.aborted and client.written == [relayed]


def test_backend_lost_mid_body_of_plain_response_resets_the_client():
    relay, client, _, ends = make()
    relay.on_head(200, JSON)
    relay.on_raw(b"{", False)
    relay.on_lost("reset")
    assert ends == [Ending.UPSTREAM_LOST]
    assert client.aborted and client.ended == 0


def test_backend_lost_before_the_head_leaves_the_answer_to_the_forwarder():
    relay, client, _, ends = make()
    relay.on_lost("refused mid-request")
    assert ends == [Ending.UPSTREAM_LOST]
    assert not relay.head_sent and client.head is None and client.written == []


def test_first_byte_timeout():
    relay, client, upstream, ends = make(first_byte=10.0)
    relay.check_timeout(relay.sent_at + 9.9)
    assert ends == []
    relay.check_timeout(relay.sent_at + 10.0)
    assert ends == [Ending.TIMED_OUT]
    assert upstream.closed and client.head is None
    relay.check_timeout(relay.sent_at + 20.0)
    assert ends == [Ending.TIMED_OUT]


@modes
def test_idle_timeout_counts_from_the_last_progress_seen(http11):
    relay, client, upstream, ends = make(idle=5.0, http11=http11)
    relay.on_head(200, SSE)
    t = relay.sent_at
    relay.check_timeout(t + 1.0)  # the head is progress, seen at t + 1
    deliver(relay, b"data: {}\n\n")
    relay.check_timeout(t + 4.0)  # new bytes since the last tick: progress at t + 4
    relay.check_timeout(t + 8.0)
    assert ends == []
    relay.check_timeout(t + 9.0)
    assert ends == [Ending.TIMED_OUT]
    assert upstream.closed and b"no data from the backend" in client.written[-1]
    assert client.ended == 1


def test_a_closed_client_means_nothing_is_sent():
    client, upstream, ends = FakeClient(), upstream_connection(), Ends(TimeoutsSpec())
    client.closed = True
    relay = Relay(REQUEST, client, b"r", ends)
    relay.send(BACKEND, upstream, [b"x"], 100.0)
    assert upstream.transport.sent is None and ends == [Ending.CLIENT_LOST]


def test_back_pressure_pauses_the_upstream():
    relay, _, upstream, ends = make()
    relay.on_client_pause()
    assert upstream.transport.paused
    relay.on_client_resume()
    assert not upstream.transport.paused
    relay.cancel()
    relay.cancel()
    assert ends == [Ending.CANCELLED]


def test_a_stripped_stream_is_relayed_decoded_without_its_usage_event():
    """The gateway asked for usage the client did not: the client gets every other byte, and
    the exchange still learns the usage."""
    relay, client, _, ends = make()
    relay.strip = UsageStripper()
    assert relay.on_head(200, SSE) == BodyMode.DECODED  # (not raw: events are cut out)
    content = b'data: {"choices":[{"delta":{"content":"a"},"finish_reason":null}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"completion_tokens":1}}\n\n'
    for piece in (content, usage[:9], usage[9:], b"data: [DONE]\n\n"):
        deliver(relay, piece, last=piece.endswith(b"[DONE]\n\n"))
    assert b"".join(client.written) == content + b"data: [DONE]\n\n"
    assert relay.observer.usage == {"completion_tokens": 1}
    assert ends == [Ending.UPSTREAM_COMPLETE]
