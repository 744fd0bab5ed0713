"""The server connection's request parsing, at the socket seam (a fake transport)."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import freed_without_collector
from warden.edge.connection import HttpConnection
from warden.edge.server import HttpServer, ServerLimits


class Transport:
    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.out.append(data)

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def is_closing(self):
        return self.closed


def sent(conn: HttpConnection) -> list[bytes]:
    """What the connection has written, its loop's turn over (writes wait for its end)."""
    conn._server.writes.flush()
    return conn.transport.out


@pytest.fixture
def served():
    """A connection whose handler records each request (and answers it)."""
    requests = []

    def handler(request, conn):
        requests.append(request)
        conn.respond(200, b"", b"ok")

    loop = asyncio.new_event_loop()
    server = HttpServer(handler, ServerLimits(), loop)
    conn = HttpConnection(server)
    conn.connection_made(Transport())
    yield conn, requests
    loop.close()


HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nX-Note: POST /v1/chat/completions "
        b"HTTP/1.1\r\nContent-Length: 2\r\n\r\n")


def test_a_request_in_one_read(served):
    conn, requests = served
    conn.data_received(HEAD + b"{}")
    assert requests[0].path == "/v1/chat/completions" and requests[0].body == b"{}"
    assert requests[0].header(b"x-note") == b"POST /v1/chat/completions HTTP/1.1"
    assert sent(conn)[-1].startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("split", [1, 20, 40, 60, len(HEAD) - 1, len(HEAD) + 1])
def test_a_request_split_anywhere_parses_the_same(served, split):
    conn, requests = served
    data = HEAD + b"{}"
    conn.data_received(data[:split])
    assert requests == []
    conn.data_received(data[split:])
    assert requests[0].header(b"host") == b"a" and requests[0].body == b"{}"


def test_pipelined_requests_are_all_answered_in_order(served):
    conn, requests = served
    bodies = [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    conn.data_received(b"".join(HEAD.replace(b"Content-Length: 2", b"Content-Length: 7") + b
                                for b in bodies))
    assert [r.body for r in requests] == bodies
    assert sum(out.startswith(b"HTTP/1.1 200") for out in sent(conn)) == 3


def test_idle_connections_are_closed_only_after_the_whole_timeout(monkeypatch):
    """Sweeps may come unevenly (a sleep can end a hair early and the next sweep follow at
    once): idleness is elapsed time, so a connection is closed only once it has been idle for
    the whole `keepalive_timeout`."""
    import warden.edge.server as server_module

    loop = asyncio.new_event_loop()
    clock = [100.0]
    loop.time = lambda: clock[0]
    server = HttpServer(lambda r, c: None, ServerLimits(keepalive_timeout=5.0), loop)
    conn = HttpConnection(server)
    transport = Transport()
    conn.connection_made(transport)
    closed_at: list[float] = []
    transport.close = lambda: closed_at.append(clock[0] - 100.0)
    sweep_times = iter([0.0, 0.999, 1.0, 2.0, 3.0, 4.0, 4.001, 4.9, 5.0, 5.5])

    async def next_sweep(_delay):
        at = next(sweep_times, None)
        if at is None:
            raise asyncio.CancelledError  # no more sweeps: end the sweeper
        clock[0] = 100.0 + at

    monkeypatch.setattr(server_module.asyncio, "sleep", next_sweep)
    task = loop.create_task(server._sweep_idle())
    loop.run_until_complete(asyncio.wait([task]))
    loop.close()
    assert closed_at and closed_at[0] == 5.0


def test_head_gets_the_headers_without_the_body(served):
    conn, _ = served
    conn.data_received(b"HEAD /health HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = sent(conn)[-1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 2" in head and body == b""


def test_a_closed_connection_is_freed_without_the_cyclic_collector():
    """The parser holds the connection's callbacks (a cycle): `connection_lost` breaks it, so
    reference counting frees a closed connection at once, not a collection later."""
    loop = asyncio.new_event_loop()
    server = HttpServer(lambda request, conn: conn.respond(200, b"", b"ok"), ServerLimits(),
                        loop)

    def closed() -> HttpConnection:
        conn = HttpConnection(server)
        conn.connection_made(Transport())
        conn.data_received(HEAD + b"{}")
        conn.connection_lost(None)
        return conn

    try:
        assert freed_without_collector(closed)
    finally:
        loop.close()
