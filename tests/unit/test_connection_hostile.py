"""What a hostile client can make the connection hold: a chunked body's trailer fields (not
forwarded, bounded like a head), a body sent a few bytes a chunk (gathered, not an object
each), answers it does not read (no more requests served until it does), heads promising
bodies it does not send (nothing held)."""

from __future__ import annotations

import asyncio
import tracemalloc

from tests.unit.test_connection import Transport, connection, post, sent, status_of
from warden.edge.connection import HttpConnection

CHUNKED = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_trailer_fields_are_neither_forwarded_nor_read_and_are_bounded():
    seen = []
    conn = connection(lambda r, c: seen.append(r) or c.respond(200, b"", b"ok"),
                      max_header_bytes=4096)
    conn.data_received(CHUNKED + b"2\r\nhi\r\n0\r\nX-Foo: 1\r\nAuthorization: Bearer x\r\n\r\n")
    assert [r.body for r in seen] == [b"hi"]
    assert b"x-foo" not in b"".join(seen[0].passed)
    assert b"authorization" not in seen[0].fields
    conn.data_received(CHUNKED + b"2\r\nhi\r\n0\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert len(seen) == 1 and status_of(conn) == b"431"
    conn._loop.close()


def test_a_body_sent_two_bytes_a_chunk_is_gathered_not_kept_piece_by_piece():
    seen = []
    conn = connection(lambda r, c: seen.append(r), max_body=4 << 20)
    payload = b"ab" * (1 << 19)   # 1 MiB in 2-byte chunks
    chunks = b"".join(b"2\r\n%s\r\n" % payload[i:i + 2] for i in range(0, len(payload), 2))
    tracemalloc.start()
    try:
        conn.data_received(CHUNKED + chunks[:len(chunks) // 2])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 2 << 20   # (half the body, 0.5 MiB: one object a piece took ~10 MiB)
    conn.data_received(chunks[len(chunks) // 2:] + b"0\r\n\r\n")
    assert [r.body for r in seen] == [payload]
    conn._loop.close()


class Reading(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def test_a_client_that_reads_no_answers_is_served_no_more_until_it_does():
    seen = []
    conn = connection(lambda r, c: seen.append(r) or c.respond(200, b"", b"ok"))
    conn.transport = Reading()
    loop = conn._loop
    conn.pause_writing()   # its socket's buffer is full: it reads nothing
    conn.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
    loop.run_until_complete(_turn())
    assert seen == [] and not conn.transport.reading
    conn.resume_writing()
    for _ in range(10):   # (each answer's end lets the next start from the loop)
        loop.run_until_complete(_turn())
    assert len(seen) == 3 and len([o for o in sent(conn) if o.startswith(b"HTTP/1.1 200")]) == 3
    loop.close()


async def _turn() -> None:
    await asyncio.sleep(0)


def test_a_bad_request_behind_requests_held_for_a_slow_reader_waits_its_turn():
    """Held while its client reads nothing, a good request keeps its place before a
    malformed one read after it (the refusal went first, and the good one got no answer),
    and the connection holding it is not idle."""
    seen = []
    conn = connection(lambda r, c: seen.append(r) or c.respond(200, b"", b"ok"))
    conn.transport = Reading()
    loop = conn._loop
    conn.pause_writing()
    conn.data_received(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost a\r\n\r\n")
    assert seen == [] and conn.busy and b"".join(sent(conn)) == b""
    conn.resume_writing()
    for _ in range(10):
        loop.run_until_complete(_turn())
    out = b"".join(sent(conn))
    assert [r.path for r in seen] == ["/1"]
    assert out.index(b"HTTP/1.1 200") < out.index(b"HTTP/1.1 400") and out.endswith(b"<eof>")
    loop.close()


def test_heads_that_promise_bodies_they_do_not_send_hold_nothing():
    """Three heads of 100 MiB bodies, no bytes after: another client's small body is read
    (they held the whole budget from their heads until their connections went idle)."""
    served = []
    first = connection(lambda r, c: served.append(r), max_body=100 << 20,
                       max_body_buffer=256 << 20)
    server = first._server
    promising = [first] + [HttpConnection(server) for _ in range(2)]
    for conn in promising:
        if conn is not first:
            conn.connection_made(Transport())
        conn.data_received(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (90 << 20))
    assert server.bodies.held == 0
    other = HttpConnection(server)
    other.connection_made(Transport())
    other.data_received(post(b"{}"))
    assert [r.body for r in served] == [b"{}"]

