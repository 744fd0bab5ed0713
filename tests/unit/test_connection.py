"""The server connection's request parsing, at the socket seam (a fake transport)."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import freed_without_collector
from warden.edge.connection import HttpConnection
from warden.edge.reading import FieldNames
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

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.out.append(b"<eof>")

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


def test_field_names_are_read_in_any_case_and_the_names_seen_stay_bounded(served):
    conn, requests = served
    for case in (b"X-Note", b"x-NOTE", b"X-Note"):   # (the second time from the server's memo)
        conn.data_received(HEAD.replace(b"X-Note", case) + b"{}")
        assert requests[-1].header(b"x-note") == b"POST /v1/chat/completions HTTP/1.1"
        assert requests[-1].header(b"content-length") == b"2"   # (an interpreted one)
    names = FieldNames(most=3)
    assert [names.lower(n) for n in (b"A", b"B", b"C", b"A")] == [b"a", b"b", b"c", b"a"]
    assert len(names) == 3
    assert names.lower(b"Made-Up") == b"made-up" and len(names) == 1   # (full: started over)
    long_name = b"X-" + b"Y" * 98   # (longer than LONGEST: lowered, never kept)
    assert names.lower(long_name) == long_name.lower() and len(names) == 1


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


def connection(handler, **limits) -> HttpConnection:
    server = HttpServer(handler, ServerLimits(**limits), asyncio.new_event_loop())
    conn = HttpConnection(server)
    conn.connection_made(Transport())
    return conn


def status_of(conn: HttpConnection) -> bytes:
    """The status of the last response written."""
    answers = [out for out in sent(conn) if out.startswith(b"HTTP/1.1 ")]
    return answers[-1].split(b" ", 2)[1] if answers else b""


@pytest.mark.parametrize("head", [
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",                  # request line
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n",        # one field
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(11)) + b"\r\n",  # count
], ids=["request line", "one field", "field count"])
def test_a_head_over_the_limits_in_one_read_is_431(head):
    answered = []
    conn = connection(lambda r, c: answered.append(r), max_header_bytes=4096,
                      max_header_count=10)
    conn.data_received(head)
    assert answered == [] and status_of(conn) == b"431" and conn._lingering


def test_an_oversized_head_after_a_pipelined_request_in_the_same_read_is_431():
    answered = []
    conn = connection(lambda r, c: answered.append(r) or c.respond(200, b"", b"ok"),
                      max_header_bytes=4096)
    conn.data_received(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                       b"GET /b HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    assert [r.path for r in answered] == ["/a"] and status_of(conn) == b"431"


def test_merged_repeats_count_as_fields():
    """A repeated list field is merged into one value: each merge copies what came before,
    so the repeats are bounded as they come, not only when the head is complete."""
    conn = connection(lambda r, c: None, max_header_count=10)
    conn.data_received(b"GET / HTTP/1.1\r\n" + b"X-Forwarded-For: 1\r\n" * 12 + b"\r\n")
    assert status_of(conn) == b"431"


def test_a_head_at_the_limits_is_read():
    answered = []
    conn = connection(lambda r, c: answered.append(r), max_header_bytes=4096,
                      max_header_count=10)
    conn.data_received(b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10))
                       + b"\r\n")
    assert len(answered) == 1


def test_a_repeated_single_valued_field_is_refused_and_a_list_one_merged():
    answered = []
    conn = connection(lambda r, c: answered.append(r))
    conn.data_received(b"GET / HTTP/1.1\r\nX-Forwarded-For: a\r\nX-Forwarded-For: b\r\n\r\n")
    assert answered[0].fields[b"x-forwarded-for"] == b"a, b"
    conn = connection(lambda r, c: answered.append(r))
    conn.data_received(b"GET / HTTP/1.1\r\nAuthorization: a\r\nauthorization: b\r\n\r\n")
    assert len(answered) == 1 and status_of(conn) == b"400"
    assert any(b"more than one authorization" in out for out in sent(conn))


def post(body: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_a_body_is_held_as_it_comes_until_its_answer_ends():
    pending = []
    conn = connection(lambda r, c: pending.append(c))
    bodies = conn._server.bodies
    conn.data_received(post(b"x" * 100)[:-40])
    assert bodies.held == 60  # what has come, not the whole Content-Length
    conn.data_received(b"x" * 40 + post(b"y" * 7))  # and a pipelined one
    assert bodies.held == 107
    pending[0].respond(200, b"", b"ok")
    assert bodies.held == 7
    conn._dispatch_queued()
    pending[1].respond(200, b"", b"ok")
    assert bodies.held == 0


@pytest.mark.parametrize("when", ["mid-upload", "waiting", "after a refusal"])
def test_a_lost_connection_gives_back_what_it_held_once(when):
    conn = connection(lambda r, c: None, max_body=1000, max_body_buffer=1000)
    bodies = conn._server.bodies
    if when == "mid-upload":
        conn.data_received(post(b"x" * 500)[:-100])
        assert bodies.held == 400
    elif when == "waiting":
        conn.data_received(post(b"x" * 500))
        assert bodies.held == 500
    else:
        conn.data_received(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3e8\r\n" + b"x" * 1000 + b"\r\n1\r\nx\r\n")
        assert status_of(conn) == b"413" and bodies.held == 0
    conn.connection_lost(None)
    assert bodies.held == 0  # (after a refusal too: released once, not again)


def test_a_body_that_does_not_fit_is_503_with_retry_after():
    first = connection(lambda r, c: None, max_body=1000, max_body_buffer=1500)
    first.data_received(post(b"x" * 1000)[:-1])
    second = HttpConnection(first._server)
    second.connection_made(Transport())
    second.data_received(b"POST / HTTP/1.1\r\nContent-Length: 502\r\n\r\n")
    assert status_of(second) == b"503" and b"retry-after: 1\r\n" in sent(second)[0]
    assert first._server.refused == {"body_buffer_full": 1}
    assert first._server.bodies.held == 999


def test_eof_after_a_request_keeps_the_connection_until_it_is_answered():
    pending = []
    conn = connection(lambda r, c: pending.append(c))
    conn.data_received(post(b"{}"))
    assert conn.eof_received() is True  # half-closed: the answer can still be written
    pending[0].respond(200, b"", b"ok")
    assert sent(conn)[-1].startswith(b"HTTP/1.1 200") and conn.transport.closed
    idle = connection(lambda r, c: None)
    assert idle.eof_received() is False  # nothing to answer: close
