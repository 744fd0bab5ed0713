from __future__ import annotations

import random
import re

from warden.edge.request import INTERPRETED
from warden.proxy import headers as hdr
from warden.upstream.target import UpstreamTarget

BACKEND = UpstreamTarget("10.1.1.1:8000", None)


def head_lines(request: list[bytes]) -> list[bytes]:
    return request[0].split(b"\r\n")


def split(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], list[bytes]]:
    """Client header fields as the server splits them (see `edge.request`)."""
    fields: dict[bytes, bytes] = {}
    passed: list[bytes] = []
    for name, value in headers:
        if name in INTERPRETED:
            fields[name] = fields[name] + b", " + value if name in fields else value
        else:
            passed += (name, b": ", value, b"\r\n")
    return fields, passed


def test_upstream_request_rewrites_what_the_gateway_owns():
    client = [(b"host", b"gateway"), (b"content-type", b"application/json"),
              (b"x-secret-hop", b"1"), (b"connection", b"keep-alive, X-Secret-Hop"),
              (b"keep-alive", b"300"), (b"te", b"trailers"), (b"x-forwarded-for", b"10.0.0.1"),
              (b"x-request-id", b"client-id"), (b"authorization", b"Bearer user"),
              (b"content-length", b"999"), (b"expect", b"100-continue")]
    request = hdr.upstream_request(b"POST", b"/v1/chat/completions", *split(client), b"{}",
                                   BACKEND, b"rid-1", "192.0.2.7")
    lines = head_lines(request)
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert b"host: 10.1.1.1:8000" in lines
    assert b"x-request-id: rid-1" in lines and b"x-request-id: client-id" not in lines
    assert b"x-forwarded-for: 10.0.0.1, 192.0.2.7" in lines
    assert b"content-length: 2" in lines and b"content-length: 999" not in lines
    assert b"authorization: Bearer user" in lines
    assert b"content-type: application/json" in lines
    for gone in (b"connection", b"x-secret-hop", b"keep-alive", b"te", b"expect"):
        assert not any(line.startswith(gone + b":") for line in lines), gone
    assert lines[-2:] == [b"", b""]  # the head ends with a blank line
    assert request[1] == b"{}"


def test_every_interpreted_field_is_forwarded_or_owned_on_purpose():
    owned = hdr.HOP_BY_HOP | {b"host", b"content-length", b"expect", b"x-request-id",
                              b"x-forwarded-for"}
    assert owned | hdr.FORWARDED_FIELDS == INTERPRETED


def test_connection_can_make_any_field_hop_by_hop():
    client = [(b"connection", b"Authorization, X-Trace"), (b"authorization", b"Bearer u"),
              (b"x-trace", b"1"), (b"x-kept", b"2"), (b"content-type", b"application/json")]
    lines = head_lines(hdr.upstream_request(b"POST", b"/v1/completions", *split(client),
                                            b"", BACKEND, b"r", "1.2.3.4"))
    assert b"x-kept: 2" in lines and b"content-type: application/json" in lines
    for gone in (b"authorization", b"x-trace", b"connection"):
        assert not any(line.startswith(gone + b":") for line in lines), gone


def test_end_to_end_fields_go_on_in_order_and_repeats_stay_separate():
    client = [(b"x-a", b"1"), (b"accept", b"*/*"), (b"x-a", b"2"),
              (b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2")]
    lines = head_lines(hdr.upstream_request(b"GET", b"/v1/models", *split(client), b"",
                                            BACKEND, b"r", "1.2.3.4"))
    assert lines[2:5] == [b"x-a: 1", b"accept: */*", b"x-a: 2"]
    assert b"x-forwarded-for: 10.0.0.1, 10.0.0.2, 1.2.3.4" in lines


def test_api_key_fields_go_on():
    client = [(b"api-key", b"k1"), (b"x-api-key", b"k2"), (b"x-other", b"3")]
    lines = head_lines(hdr.upstream_request(b"POST", b"/v1/completions", *split(client), b"",
                                            BACKEND, b"r", "1.2.3.4"))
    assert b"api-key: k1" in lines and b"x-api-key: k2" in lines and b"x-other: 3" in lines


def test_backend_api_key_replaces_the_clients():
    backend = UpstreamTarget("h:1", "backend-key")
    request = hdr.upstream_request(b"POST", b"/v1/models",
                                   *split([(b"authorization", b"Bearer u")]), b"", backend,
                                   b"r", "1.2.3.4")
    lines = head_lines(request)
    assert b"authorization: Bearer backend-key" in lines
    assert b"authorization: Bearer u" not in lines


def test_response_head_is_rewritten_in_one_pass():
    upstream = [(b"content-type", b"text/event-stream; charset=utf-8"),
                (b"transfer-encoding", b"chunked"), (b"date", b"x"),
                (b"x-request-id", b"theirs"), (b"server", b"uvicorn")]
    block, length, event_stream = hdr.response_head(
        upstream, 200, b"ours", UpstreamTarget("127.0.0.1:18090", None), True)
    assert block == (b"content-type: text/event-stream; charset=utf-8\r\n"
                     b"server: uvicorn\r\nx-request-id: ours\r\n"
                     b"x-upstream-addr: 127.0.0.1:18090\r\nx-upstream-status: 200\r\n")
    assert event_stream and length is None


def test_response_head_framing_and_connection_listed_headers():
    upstream = [(b"content-length", b"12"), (b"content-type", b"application/json"),
                (b"x-hop", b"1"), (b"connection", b"x-hop, keep-alive")]
    block, length, event_stream = hdr.response_head(upstream, 503, b"r", BACKEND, True)
    assert length == 12 and not event_stream
    assert b"x-hop" not in block and b"connection" not in block
    assert b"x-upstream-status: 503\r\n" in block


def test_passthrough_keeps_the_backend_head_and_drops_keep_alive():
    raw = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 23\r\n"
           b"Connection: keep-alive\r\nContent-Type: application/json\r\n")
    passed = hdr.passthrough_head(raw, 200, b"rid", BACKEND, True)
    assert passed is not None
    block, event_stream, length_framed = passed
    assert not event_stream and length_framed
    assert block == (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 23\r\n"
                     b"Content-Type: application/json\r\nx-request-id: rid\r\n"
                     b"x-upstream-addr: 10.1.1.1:8000\r\nx-upstream-status: 200\r\n")


def test_passthrough_flags_an_event_stream():
    sse = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    passed = hdr.passthrough_head(sse, 200, b"r", BACKEND, True)
    assert passed is not None
    block, event_stream, length_framed = passed
    assert event_stream and not length_framed and block.startswith(sse)


def test_passthrough_refuses_what_it_cannot_pass():
    for raw in (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: theirs\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nUpgrade: h2c\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",  # unframed
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n",
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n"):
        assert hdr.passthrough_head(raw, 200, b"r", BACKEND, True) is None, raw
        assert hdr.passthrough_head(raw, 200, b"r", BACKEND, False) is None, raw


def test_passthrough_hides_the_backend_unless_exposed():
    """Not exposed: the backend's Server line is cut out and no X-Upstream-Addr is added;
    every other byte of its head passes as it came (no rewrite)."""
    raw = (b"HTTP/1.1 200 OK\r\ndate: x\r\nServer: uvicorn\r\nContent-Length: 23\r\n"
           b"Server-Timing: a=1\r\nContent-Type: application/json\r\n")
    passed = hdr.passthrough_head(raw, 200, b"rid", BACKEND, False)
    assert passed is not None
    assert passed[0] == (b"HTTP/1.1 200 OK\r\ndate: x\r\nContent-Length: 23\r\n"
                         b"Server-Timing: a=1\r\nContent-Type: application/json\r\n"
                         b"x-request-id: rid\r\nx-upstream-status: 200\r\n")
    exposed = hdr.passthrough_head(raw, 200, b"rid", BACKEND, True)
    assert exposed is not None
    assert exposed[0] == raw + (b"x-request-id: rid\r\nx-upstream-addr: 10.1.1.1:8000\r\n"
                                b"x-upstream-status: 200\r\n")
    sse = b"HTTP/1.1 200 OK\r\nserver: uvicorn\r\ntransfer-encoding: chunked\r\n" \
          b"content-type: text/event-stream\r\n"
    passed = hdr.passthrough_head(sse, 200, b"r", BACKEND, False)
    assert passed is not None and passed[1] and b"uvicorn" not in passed[0]


def test_several_server_lines_are_left_to_the_rewrite():
    raw = b"HTTP/1.1 200 OK\r\nServer: a\r\nContent-Length: 2\r\nServer: b\r\n"
    assert hdr.passthrough_head(raw, 200, b"r", BACKEND, False) is None
    block, length, _ = hdr.response_head(hdr.parse_head(raw), 200, b"r", BACKEND, False)
    assert block == b"x-request-id: r\r\nx-upstream-status: 200\r\n" and length == 2


def test_a_rewritten_head_hides_the_backend_unless_exposed():
    upstream = [(b"server", b"uvicorn"), (b"content-length", b"2"), (b"x-hop", b"1"),
                (b"connection", b"x-hop")]
    block, _, _ = hdr.response_head(upstream, 200, b"r", BACKEND, False)
    assert block == b"x-request-id: r\r\nx-upstream-status: 200\r\n"
    block, _, _ = hdr.response_head(upstream, 200, b"r", BACKEND, True)
    assert block == (b"server: uvicorn\r\nx-request-id: r\r\n"
                     b"x-upstream-addr: 10.1.1.1:8000\r\nx-upstream-status: 200\r\n")


def test_a_traced_request_carries_the_gateways_traceparent_in_place_of_the_clients():
    client = [(b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
              (b"tracestate", b"vendor=1"), (b"content-type", b"application/json")]
    ours = b"00-" + b"c" * 32 + b"-" + b"d" * 16 + b"-01"
    lines = head_lines(hdr.upstream_request(b"POST", b"/v1/completions", *split(client), b"",
                                            BACKEND, b"r", "1.2.3.4", ours))
    assert [line for line in lines if line.startswith(b"traceparent")] == \
        [b"traceparent: " + ours]
    assert b"tracestate: vendor=1" in lines  # (the client's state goes on)
    untraced = head_lines(hdr.upstream_request(b"POST", b"/v1/completions", *split(client),
                                               b"", BACKEND, b"r", "1.2.3.4"))
    assert b"traceparent: 00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01" in untraced


# The passthrough test as it was written before (searches of the lower-cased head): the
# compiled line loop that replaced it must decide every head the same way.
_NOT_PASSABLE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-|te[ \t:]|trailer|upgrade|x-request-id)")
_KEEP_ALIVE_LINE = b"\r\nconnection: keep-alive\r\n"


def _passthrough_by_searches(raw: bytes, status: int, request_id: bytes, expose: bool):
    low = raw.lower()
    at = low.find(_KEEP_ALIVE_LINE)
    if at >= 0:
        cut = at + len(_KEEP_ALIVE_LINE) - 2
        raw, low = raw[:at] + raw[cut:], low[:at] + low[cut:]
    length_framed = low.find(b"\r\ncontent-length:") >= 0
    if (not raw.startswith(b"HTTP/1.1 ")
            or (not length_framed and low.find(b"\r\ntransfer-encoding: chunked\r\n") < 0)
            or _NOT_PASSABLE.search(low) is not None):
        return None
    status_line = b"x-upstream-status: %d\r\n" % status
    event_stream = low.find(b"\r\ncontent-type: text/event-stream") >= 0
    if expose:
        return (b"".join((raw, b"x-request-id: ", request_id, b"\r\n", BACKEND.addr_line,
                          status_line)), event_stream, length_framed)
    around = low.split(b"\r\nserver:")
    if len(around) == 1:
        return (b"".join((raw, b"x-request-id: ", request_id, b"\r\n", status_line)),
                event_stream, length_framed)
    if len(around) > 2:
        return None
    at = len(around[0])
    end = at + 9 + len(around[1].partition(b"\r\n")[0])
    return (b"".join((raw[:at], raw[end:], b"x-request-id: ", request_id, b"\r\n",
                      status_line)), event_stream, length_framed)


_LINES = [b"Server: uvicorn", b"server: nginx/1.22", b"Server-Timing: a=1", b"Date: x",
          b"Content-Length: 23", b"content-length: 0", b"Content-Type: application/json",
          b"Content-Type: text/event-stream; charset=utf-8", b"content-type: text/event-stream",
          b"Transfer-Encoding: chunked", b"transfer-encoding: gzip, chunked",
          b"Connection: keep-alive", b"connection: Keep-Alive", b"Connection: close",
          b"Connection-Extra: 1", b"Keep-Alive: timeout=5", b"Proxy-Authenticate: x",
          b"TE: trailers", b"te:x", b"Tes: 1", b"Trailer: x", b"Trailers: y", b"Upgrade: h2c",
          b"Upgrade-Insecure-Requests: 1", b"X-Request-Id: theirs", b"X-Request-Idx: 1",
          b"x-other: 2", b"Cache-Control: no-cache", b"Keep: 1", b"t: 1", b"c: 2", b"s: 3"]


def test_the_line_loop_passes_every_head_as_the_searches_did():
    rng = random.Random(7)
    for n in range(4000):
        status_line = b"HTTP/1.0 200 OK" if n % 97 == 0 else b"HTTP/1.1 200 OK"
        lines = rng.sample(_LINES, rng.randint(0, 6))
        if n % 3 == 0:  # most real heads are framed
            lines.append(rng.choice((b"Content-Length: 5", b"Transfer-Encoding: chunked")))
        rng.shuffle(lines)
        raw = b"\r\n".join([status_line, *lines]) + b"\r\n"
        for expose in (False, True):
            assert hdr.passthrough_head(raw, 200, b"rid", BACKEND, expose) == \
                _passthrough_by_searches(raw, 200, b"rid", expose), (raw, expose)
