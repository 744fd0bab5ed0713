"""The relay and a client that reads slowly or not at all: back-pressure reaches the backend
(an exchange begun while the client's buffer is full starts paused), a stall while the
client reads nothing is the client's, not the backend's, and a decoded stream cut in the
middle of an event resets the client rather than append an error to half an event."""

from __future__ import annotations

from tests.unit.test_relay import (
    BACKEND,
    REQUEST,
    SSE,
    Ends,
    FakeClient,
    deliver,
    make,
    upstream_connection,
)
from warden.config.schema import TimeoutsSpec
from warden.proxy.relay import Relay
from warden.stream.observer import Ending
from warden.stream.usage_strip import UsageStripper


def pause(relay: Relay, client: FakeClient) -> None:
    """The client's buffer fills: its connection notes it, then tells its watcher."""
    client.writing_paused = True
    relay.on_client_pause()


def test_an_exchange_begun_while_its_client_is_paused_starts_paused():
    client, upstream, ends = FakeClient(), upstream_connection(), Ends(TimeoutsSpec())
    client.writing_paused = True   # (the answer before this one filled its buffer)
    relay = Relay(REQUEST, client, b"r2", ends)
    relay.send(BACKEND, upstream, [b"POST / HTTP/1.1\r\n\r\n"], 100.0)
    assert upstream.transport.paused and relay._writer.paused()
    relay.on_client_resume()
    assert not upstream.transport.paused


def test_a_stream_stalled_by_its_client_drops_the_client_and_spares_the_backend():
    relay, client, upstream, ends = make(idle=5.0)
    relay.on_head(200, SSE)
    t = relay.sent_at
    relay.check_timeout(t + 1.0)
    pause(relay, client)   # the client reads nothing from here on
    relay.check_timeout(t + 6.5)
    assert ends == [Ending.CLIENT_LOST]
    assert client.aborted and upstream.closed
    assert relay.lost_reason == "the client read nothing for 5s"


def test_a_first_byte_late_while_the_client_reads_nothing_is_the_clients():
    relay, client, upstream, ends = make(first_byte=10.0)
    pause(relay, client)
    relay.check_timeout(relay.sent_at + 10.0)
    assert ends == [Ending.CLIENT_LOST] and client.aborted and upstream.closed


def test_a_stall_after_the_client_resumed_is_the_backends_again():
    relay, client, _, ends = make(idle=5.0)
    relay.on_head(200, SSE)
    relay.check_timeout(relay.sent_at + 1.0)
    pause(relay, client)
    client.writing_paused = False   # (as the connection does, then tells its watcher)
    relay.on_client_resume()
    relay.check_timeout(relay.sent_at + 6.5)
    assert ends == [Ending.TIMED_OUT]
    assert relay.lost_reason == "no data from the backend for 5s"


def test_a_decoded_stream_cut_inside_an_event_resets_the_client():
    relay, client, _, ends = make(http11=False)
    relay.on_head(200, SSE)
    deliver(relay, b"data: {}\n\n")
    deliver(relay, b'data: {"choi')   # half an event relayed
    relay.on_lost("backend closed the connection")
    assert ends == [Ending.UPSTREAM_LOST]
    assert client.aborted and b"".join(client.written) == b'data: {}\n\ndata: {"choi'


def test_a_stripped_stream_holds_half_events_back_so_its_cut_is_clean():
    """The stripper passes whole events only: the client has none cut, and gets the error
    event."""
    relay, client, _, ends = make()
    relay.strip = UsageStripper()
    relay.on_head(200, SSE)
    deliver(relay, b"data: {}\n\n")
    deliver(relay, b'data: {"choi')
    relay.on_lost("backend closed the connection")
    assert ends == [Ending.UPSTREAM_LOST]
    assert not client.aborted and client.ended == 1
    assert b"".join(client.written).startswith(b'data: {}\n\ndata: {"error":')


def test_the_connection_remembers_that_its_client_is_paused():
    """(uvloop says so once, when the buffer fills: a watcher set later must ask.)"""
    from tests.unit.test_connection import connection

    conn = connection(lambda request, c: None)
    conn.pause_writing()
    assert conn.writing_paused
    conn.resume_writing()
    assert not conn.writing_paused
    conn._loop.close()
