"""Header rules for both directions, each applied in a single pass over the headers.

RFC 9110 §7.6.1: hop-by-hop headers are not forwarded, nor is any header that `Connection`
names. The gateway owns framing (Content-Length / Transfer-Encoding), `Host`, the request id
and `X-Forwarded-For`; the backend's copies of those are replaced, never duplicated.

What a response tells the client of its backend is the `expose` argument (the config's
`expose_upstream`): exposed, `X-Upstream-Addr` and the backend's `Server` header; else neither.
"""

from __future__ import annotations

import re

from warden.upstream.target import UpstreamTarget

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

# The client's interpreted fields (`edge.request.INTERPRETED`) that go on to the backend
# (authorization only when the backend has no key of its own); the rest of them are hop-by-hop
# or rewritten by the gateway (host, content-length, x-request-id, x-forwarded-for, expect).
FORWARDED_FIELDS = frozenset({b"content-type", b"authorization", b"api-key", b"x-api-key"})
_REWRITTEN_DOWN = HOP_BY_HOP | {b"content-length", b"x-request-id", b"date"}
_REWRITTEN_DOWN_HIDDEN = _REWRITTEN_DOWN | {b"server"}
# `Connection` tokens that name no extra header.
_CONNECTION_OPTIONS = frozenset({b"keep-alive", b"close", b""})
# Whole `Connection` values that name none, as clients usually send them (a shortcut).
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})
_NONE: frozenset[bytes] = frozenset()
_TRACE_CONTEXT = frozenset({b"traceparent"})


def upstream_request(method: bytes, target: bytes, fields: dict[bytes, bytes],
                     passed: list[bytes], body: bytes, backend: UpstreamTarget,
                     request_id: bytes, client_ip: str,
                     traceparent: bytes = b"") -> list[bytes]:
    """The request as written to the backend: [head, body] (written with writelines, so a
    large body is never copied). `fields` and `passed` are the client's header fields as the
    server split them (`edge.request`): of `fields`, only `FORWARDED_FIELDS` go on (every
    other one is hop-by-hop or the gateway's own); `passed` goes on as it is, unless
    `Connection` names some of it. `traceparent`: the gateway's span's (a traced request),
    sent in place of the client's `traceparent`; empty, the client's goes on as it is."""
    listed = _NONE
    connection = fields.get(b"connection")
    if connection is not None and connection not in _PLAIN_CONNECTION:
        listed = _listed_by(connection)  # rare: these fields are hop-by-hop too
    lines = [method, b" ", target, backend.host_line]
    content_type = fields.get(b"content-type")
    if content_type is not None and b"content-type" not in listed:
        lines += (b"content-type: ", content_type, b"\r\n")
    if not backend.auth_line:
        authorization = fields.get(b"authorization")
        if authorization is not None and b"authorization" not in listed:
            lines += (b"authorization: ", authorization, b"\r\n")
    key = fields.get(b"api-key")
    if key is not None and b"api-key" not in listed:
        lines += (b"api-key: ", key, b"\r\n")
    key = fields.get(b"x-api-key")
    if key is not None and b"x-api-key" not in listed:
        lines += (b"x-api-key: ", key, b"\r\n")
    if traceparent:  # (a sampled request only)
        lines += _without(passed, listed | _TRACE_CONTEXT)
        lines += (b"traceparent: ", traceparent, b"\r\n")
    else:
        lines += _without(passed, listed) if listed else passed
    forwarded = fields.get(b"x-forwarded-for")
    forwarded_for = client_ip.encode() if forwarded is None \
        else forwarded + b", " + client_ip.encode()
    lines += (backend.auth_line, b"x-request-id: ", request_id, b"\r\nx-forwarded-for: ",
              forwarded_for, b"\r\ncontent-length: ", b"%d" % len(body), b"\r\n\r\n")
    return [b"".join(lines), body]


def _without(passed: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """`passed` (rendered fields, four items each) without the fields named."""
    kept: list[bytes] = []
    for i in range(0, len(passed), 4):
        if passed[i] not in names:
            kept += passed[i:i + 4]
    return kept


# In a lower-cased head: a hop-by-hop header, or X-Request-Id (the gateway sets its own).
_NOT_PASSABLE = re.compile(
    rb"\r\n(?:connection|keep-alive|proxy-|te[ \t:]|trailer|upgrade|x-request-id)")
_KEEP_ALIVE_LINE = b"\r\nconnection: keep-alive\r\n"
_UPSTREAM_STATUS = {s: b"x-upstream-status: %d\r\n" % s for s in range(100, 600)}


def passthrough_head(raw: bytes, status: int, request_id: bytes, backend: UpstreamTarget,
                     expose: bool) -> tuple[bytes, bool, bool] | None:
    """The client's head when the backend's head can be passed through as it is with the
    gateway's lines appended: HTTP/1.1, a framed body (Content-Length or chunked), no
    hop-by-hop headers, no `X-Request-Id`. Else None: the caller rewrites it with
    `response_head`, which decides the rest. `raw` is the status line and header lines, each
    ending in CRLF. Returns (the head block, whether it is an event stream, whether its body
    is framed by Content-Length): an event stream passes through too (its chunks are relayed
    as the backend framed them), flagged so that the caller observes it. Not `expose`d: the
    backend's `Server` line is cut out (a search and a splice: still no rewrite) and no
    `X-Upstream-Addr` is added.

    Cost rule: this runs per response, so it is a lower() and a few C-level searches."""
    low = raw.lower()
    at = low.find(_KEEP_ALIVE_LINE)
    if at >= 0:  # many servers say so; it is hop-by-hop, and the default in HTTP/1.1
        cut = at + len(_KEEP_ALIVE_LINE) - 2
        raw, low = raw[:at] + raw[cut:], low[:at] + low[cut:]
    length_framed = low.find(b"\r\ncontent-length:") >= 0
    if (not raw.startswith(b"HTTP/1.1 ")
            or (not length_framed and low.find(b"\r\ntransfer-encoding: chunked\r\n") < 0)
            or _NOT_PASSABLE.search(low) is not None):
        return None
    status_line = _UPSTREAM_STATUS.get(status) or b"x-upstream-status: %d\r\n" % status
    event_stream = low.find(b"\r\ncontent-type: text/event-stream") >= 0
    if expose:
        return (b"".join((raw, b"x-request-id: ", request_id, b"\r\n", backend.addr_line,
                          status_line)), event_stream, length_framed)
    # (split and partition, not find(x, start): on CPython 3.11 bytes.find parses its
    # arguments with PyArg_ParseTuple, ~700 instructions a call.)
    around = low.split(b"\r\nserver:")
    if len(around) == 1:
        return (b"".join((raw, b"x-request-id: ", request_id, b"\r\n", status_line)),
                event_stream, length_framed)
    if len(around) > 2:
        return None  # rare: several; `response_head` drops them all
    at = len(around[0])  # (`raw` and `low` have the same offsets)
    end = at + 9 + len(around[1].partition(b"\r\n")[0])
    return (b"".join((raw[:at], raw[end:], b"x-request-id: ", request_id, b"\r\n",
                      status_line)), event_stream, length_framed)


def parse_head(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Header (lower-case name, value) pairs of a raw head that httptools already validated."""
    headers = []
    for line in raw.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower(), value.strip()))
    return headers


def response_head(headers: list[tuple[bytes, bytes]], status: int, request_id: bytes,
                  backend: UpstreamTarget, expose: bool) -> tuple[bytes, int | None, bool]:
    """A backend's response head rewritten for the client, in one pass: (header block,
    Content-Length or None when chunked, whether it is an event stream)."""
    drop = _REWRITTEN_DOWN if expose else _REWRITTEN_DOWN_HIDDEN
    while True:
        out: list[bytes] = []
        length: int | None = None
        chunked = event_stream = False
        connection = b""
        for name, value in headers:
            if name in drop:
                if name == b"content-length" and value.isdigit():
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = True
                elif name == b"connection":
                    connection = value
                continue
            if name == b"content-type":
                event_stream = value.startswith(b"text/event-stream")
            out += (name, b": ", value, b"\r\n")
        listed = _listed_by(connection) - drop
        if not listed:
            break
        drop = drop | listed  # rare: render again without the headers Connection names
    out += (b"x-request-id: ", request_id, b"\r\n", backend.addr_line if expose else b"",
            b"x-upstream-status: ", b"%d" % status, b"\r\n")
    return b"".join(out), None if chunked else length, event_stream


def _listed_by(connection: bytes) -> frozenset[bytes]:
    """Header names that a `Connection` value lists (its options aside)."""
    if not connection:
        return frozenset()
    return frozenset(t.strip().lower() for t in connection.split(b",")) - _CONNECTION_OPTIONS
