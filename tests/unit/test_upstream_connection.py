"""The upstream connection's framing contract with its sink, at the socket seam (a fake
transport): what reaches `on_raw`, `observe_piece` and `on_body`, and when it is reusable."""

from __future__ import annotations

import pytest

from tests.harness import freed_without_collector
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode

SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
EVENTS = [b"data: {}\n\n", b"data: [DONE]\n\n"]
SSE_BODY = b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in EVENTS) + b"0\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.aborted = False

    def writelines(self, parts) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return default

    def abort(self) -> None:
        self.aborted = True


class Sink:
    def __init__(self, mode: int):
        self.mode = mode
        self.heads: list[bytes] = []
        self.raw: list[tuple[bytes, bool]] = []
        self.observed: list[bytes] = []
        self.decoded: list[bytes] = []
        self.completed = 0
        self.lost: list[str] = []

    def on_head(self, status, head):
        self.heads.append(head)
        return self.mode

    def on_raw(self, data, last):
        self.raw.append((data, last))

    def observe_piece(self, piece):
        self.observed.append(piece)

    def on_body(self, chunk):
        self.decoded.append(chunk)

    def flush(self):
        pass

    def on_complete(self):
        self.completed += 1

    def on_lost(self, reason):
        self.lost.append(reason)


def sent(mode: int) -> tuple[UpstreamConnection, Sink]:
    conn = UpstreamConnection()
    conn.connection_made(Transport())
    sink = Sink(mode)
    conn.send([b"POST / HTTP/1.1\r\n\r\n"], sink)
    return conn, sink


@pytest.mark.parametrize("split", [0, 10, len(SSE_HEAD), len(SSE_HEAD) + 3])
def test_raw_observed_stream_goes_as_it_came_and_observed_de_chunked(split):
    conn, sink = sent(BodyMode.RAW_OBSERVED)
    whole = SSE_HEAD + SSE_BODY
    for part in (whole[:split], whole[split:]):
        if part:
            conn.data_received(part)
    assert sink.heads == [SSE_HEAD[:-2]]
    assert b"".join(data for data, _ in sink.raw) == SSE_BODY and sink.raw[-1][1] is True
    assert sink.observed == EVENTS and sink.decoded == [] and sink.lost == []
    assert conn.reusable


def test_decoded_mode_hands_over_pieces_and_the_end():
    conn, sink = sent(BodyMode.DECODED)
    conn.data_received(SSE_HEAD + SSE_BODY)
    assert sink.decoded == EVENTS and sink.raw == [] and sink.observed == []
    assert sink.completed == 1 and conn.reusable


def test_a_stray_second_response_in_the_same_read_reaches_no_client_and_ends_reuse():
    """Raw, its bytes and the stray ones are one piece: the response fails rather than hand
    the client a second response (the answer to its next request). Decoded, the sink gets
    exactly its own body."""
    conn, sink = sent(BodyMode.RAW_OBSERVED)
    conn.data_received(SSE_HEAD + SSE_BODY + SSE_HEAD + SSE_BODY)
    assert len(sink.heads) == 1 and sink.observed == EVENTS
    assert sink.raw == [] and sink.lost == ["backend sent bytes after its response"]
    assert not conn.reusable and conn.closed
    conn, sink = sent(BodyMode.DECODED)
    conn.data_received(SSE_HEAD + SSE_BODY + SSE_HEAD + SSE_BODY)
    assert sink.decoded == EVENTS and sink.completed == 1 and not conn.reusable


@pytest.mark.parametrize("mode", [BodyMode.RAW, BodyMode.DECODED])
def test_part_of_a_stray_head_after_a_response_ends_reuse(mode):
    """Only the start of another response's head in the read that ended this one: the
    connection is out of sync all the same (the next request would get that response)."""
    conn, sink = sent(mode)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi"
                       b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n")
    assert not conn.reusable
    if mode == BodyMode.DECODED:
        assert sink.decoded == [b"hi"] and sink.completed == 1


def test_empty_lines_before_the_status_line_are_not_part_of_the_head():
    conn, sink = sent(BodyMode.RAW)
    conn.data_received(b"\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
    assert sink.heads == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"]
    assert sink.raw == [(b"hi", True)] and conn.reusable


def test_a_head_that_never_ends_fails_at_64_kib():
    conn, sink = sent(BodyMode.RAW)
    conn.data_received(b"HTTP/1.1 200 OK\r\n")
    for _ in range(70):
        conn.data_received(b"x-filler: " + b"y" * 1000 + b"\r\n")
        if sink.lost:
            break
    assert sink.lost == ["response head over 64 KiB from backend"] and conn.closed
    assert sink.heads == []


INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"
FINAL = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"


@pytest.mark.parametrize("mode", [BodyMode.RAW, BodyMode.DECODED])
@pytest.mark.parametrize("split", [0, 25, len(INTERIM), len(INTERIM) + 5])
def test_interim_responses_are_skipped_and_the_final_one_reaches_the_sink(mode, split):
    conn, sink = sent(mode)
    whole = INTERIM + FINAL
    for part in (whole[:split], whole[split:]):
        if part:
            conn.data_received(part)
    assert sink.heads == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"]
    if mode == BodyMode.RAW:
        assert sink.raw == [(b"{}", True)]
    else:
        assert sink.decoded == [b"{}"] and sink.completed == 1
    assert sink.lost == [] and conn.reusable


def test_bytes_nobody_asked_for_close_the_connection():
    conn, sink = sent(BodyMode.RAW)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
    assert sink.raw == [(b"{}", True)] and conn.reusable
    conn.data_received(b"HTTP/1.1 200 OK\r\n")
    assert conn.closed and not conn.reusable and conn.transport.aborted


def test_a_lost_connection_is_freed_without_the_cyclic_collector():
    """As the client side (test_connection): the parser's callbacks are a cycle that
    `connection_lost` breaks."""
    def lost() -> UpstreamConnection:
        conn = UpstreamConnection()
        conn.connection_made(Transport())
        conn.send([b"GET / HTTP/1.1\r\n\r\n"], Sink(BodyMode.RAW_OBSERVED))
        conn.data_received(SSE_HEAD + SSE_BODY[:5])
        conn.connection_lost(None)
        return conn

    assert freed_without_collector(lost)


@pytest.mark.parametrize("mode", [BodyMode.RAW, BodyMode.DECODED])
def test_a_body_framed_by_the_connections_end_completes_at_its_close(mode):
    """HTTP/1.0 style (no Content-Length, not chunked: a server behind another proxy): the
    backend's close is its end, not a loss; with a length, a close before it is a loss."""
    conn, sink = sent(mode)
    conn.data_received(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"a":')
    conn.data_received(b"1}")
    conn.connection_lost(None)
    if mode == BodyMode.RAW:
        assert sink.raw == [(b'{"a":', False), (b"1}", False), (b"", True)]
    else:
        assert sink.decoded == [b'{"a":', b"1}"] and sink.completed == 1
    assert sink.lost == [] and not conn.reusable
    conn, sink = sent(mode)
    conn.data_received(b'HTTP/1.0 200 OK\r\ncontent-length: 10\r\n\r\n{"a":')
    conn.connection_lost(None)
    assert sink.lost == ["backend closed the connection"]
    conn, sink = sent(mode)
    conn.data_received(b'HTTP/1.0 200 OK\r\n\r\n{"a":')
    conn.connection_lost(ConnectionResetError())   # (a reset is a loss, framed or not)
    assert sink.lost == ["backend connection lost (ConnectionResetError)"]
