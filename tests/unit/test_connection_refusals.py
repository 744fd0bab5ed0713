"""A request that cannot be read, pipelined behind ones that can: those read before it are
answered whole and in order, then its error, then the half-close (a half-close at once would
cut their answers short, and a write after it fails)."""

from __future__ import annotations

from tests.unit.test_connection import connection, sent

GOOD = b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n"
MALFORMED = b"GET / HTTP/1.1\r\nHost a\r\n\r\n"   # (no colon: the parser refuses it)


def streaming_handler(started: list):
    """Starts each response and leaves it open (a stream still coming)."""
    def handler(request, conn):
        started.append(request.path)
        conn.start_response(200, b"content-type: text/event-stream\r\n")
        conn.write(b"data: 1\n\n")
    return handler


def test_a_bad_request_behind_a_stream_waits_for_the_answers_before_it():
    started: list[str] = []
    conn = connection(streaming_handler(started))
    loop = conn._loop
    conn.data_received(GOOD % 1 + GOOD % 2 + MALFORMED)
    assert started == ["/1"] and conn._lingering
    assert b"<eof>" not in sent(conn)   # the stream goes on
    conn.write(b"data: 2\n\n")
    conn.end_response()
    loop.run_until_complete(_turn())   # the queued request starts from the loop
    assert started == ["/1", "/2"]
    assert b"<eof>" not in sent(conn)
    conn.end_response()
    out = b"".join(sent(conn))
    first, second, refusal = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and b"data: 2\n\n" in first
    assert second.startswith(b"200")
    assert refusal.startswith(b"400") and b"malformed HTTP request" in refusal
    assert out.endswith(b"<eof>") and b"connection: close" in refusal.lower()
    loop.close()


def test_a_client_half_closing_meanwhile_still_gets_every_answer():
    started: list[str] = []
    conn = connection(streaming_handler(started))
    conn.data_received(GOOD % 1 + MALFORMED)
    assert conn.eof_received() is True   # kept open: an answer and a refusal are owed
    conn.data_received(b"ignored")       # (lingering: discarded)
    conn.end_response()
    out = b"".join(sent(conn))
    assert out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 400" in out and out.endswith(b"<eof>")
    conn._loop.close()


def test_with_nothing_in_flight_the_refusal_is_answered_at_once():
    conn = connection(streaming_handler([]))
    conn.data_received(MALFORMED)
    out = b"".join(sent(conn))
    assert out.startswith(b"HTTP/1.1 400") and out.endswith(b"<eof>")
    assert conn.eof_received() is False   # (lingering, answered: close)
    conn._loop.close()


async def _turn() -> None:
    return None
