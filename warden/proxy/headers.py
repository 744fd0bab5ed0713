"""Header rules for both directions, each applied in a single pass over the headers.

RFC 9110 §7.6.1: hop-by-hop headers are not forwarded, nor is any header that `Connection`
names. The gateway owns framing (Content-Length / Transfer-Encoding), `Host`, the request id
and `X-Forwarded-For`; the backend's copies of those are replaced, never duplicated.

What a response tells the client of its backend is the `expose` argument (the config's
`expose_upstream`): exposed, `X-Upstream-Addr` and the backend's `Server` header; else neither.
"""

from __future__ import annotations

from typing import Final

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


_UPSTREAM_STATUS = {s: b"x-upstream-status: %d\r\n" % s for s in range(100, 600)}
# A lower-cased header line's first byte, for the names the passthrough looks at.
_C: Final = 0x63  # c
_K: Final = 0x6B  # k
_P: Final = 0x70  # p
_S: Final = 0x73  # s
_T: Final = 0x74  # t
_U: Final = 0x75  # u
_X: Final = 0x78  # x


def passthrough_head(raw: bytes, status: int, request_id: bytes, backend: UpstreamTarget,
                     expose: bool) -> tuple[bytes, bool, bool] | None:
    """The client's head when the backend's head can be passed through as it is with the
    gateway's lines appended: HTTP/1.1, a framed body (Content-Length or chunked), no
    hop-by-hop headers, no `X-Request-Id`. Else None: the caller rewrites it with
    `response_head`, which decides the rest. `raw` is the status line and header lines, each
    ending in CRLF. Returns (the head block, whether it is an event stream, whether its body
    is framed by Content-Length): an event stream passes through too (its chunks are relayed
    as the backend framed them), flagged so that the caller observes it. A `Connection:
    keep-alive` line (many servers send it; it is the default in HTTP/1.1) is cut out; so is
    the backend's `Server` line when not `expose`d, and no `X-Upstream-Addr` is added then."""
    scan = _scan_head(raw)
    if scan is None:
        return None
    status_line = _UPSTREAM_STATUS.get(status) or b"x-upstream-status: %d\r\n" % status
    if expose:
        tail = b"x-request-id: " + request_id + b"\r\n" + backend.addr_line + status_line
        kept = _cut_lines(raw, scan.keep_alive, scan.keep_alive_end, -1, -1)
    elif scan.servers > 1:
        return None  # rare: several; `response_head` drops them all
    else:
        tail = b"x-request-id: " + request_id + b"\r\n" + status_line
        kept = _cut_lines(raw, scan.keep_alive, scan.keep_alive_end, scan.server,
                          scan.server_end)
    return kept + tail, scan.event_stream, scan.length_framed


class HeadScan:
    """What `passthrough_head` needs of a backend's head: whether its body is framed by
    Content-Length, whether it is an event stream, where its keep-alive line and its (last)
    Server line start and end in the head (-1: none), and how many Server lines it has."""

    __slots__ = ("event_stream", "keep_alive", "keep_alive_end", "length_framed", "server",
                 "server_end", "servers")

    def __init__(self) -> None:
        self.length_framed = False
        self.event_stream = False
        self.keep_alive = self.keep_alive_end = -1
        self.server = self.server_end = -1
        self.servers = 0


def _scan_head(raw: bytes) -> HeadScan | None:
    """The head's `HeadScan`, or None when it cannot pass (not HTTP/1.1, unframed, a
    hop-by-hop or X-Request-Id line).

    Cost rule: this runs per response: one `lower()`, one `split()`, and a compiled loop over
    the lines that looks at a line only when its first byte starts a name of interest (by
    slices: on CPython 3.11 `bytes.find`/`startswith` parse their arguments with
    `PyArg_ParseTuple`, ~700 instructions a call, and a `re` search of a head ~3k)."""
    if raw[:9] != b"HTTP/1.1 ":
        return None
    lines = raw.lower().split(b"\r\n")
    scan = HeadScan()
    chunked = False
    at = len(lines[0]) + 2          # where the line looked at starts in `raw`
    for i in range(1, len(lines)):
        line = lines[i]
        size = len(line)
        first = line[0] if size else 0
        if first == _C:
            if line[:15] == b"content-length:":
                scan.length_framed = True
            elif line[:31] == b"content-type: text/event-stream":
                scan.event_stream = True
            elif line[:10] == b"connection":
                if scan.keep_alive >= 0 or line != b"connection: keep-alive":
                    return None  # hop-by-hop, and it may name others
                scan.keep_alive, scan.keep_alive_end = at, at + size + 2
        elif first == _S and line[:7] == b"server:":
            scan.servers += 1
            scan.server, scan.server_end = at, at + size + 2
        elif first == _T:
            if line == b"transfer-encoding: chunked":
                chunked = True
            elif line[:7] == b"trailer" or (line[:2] == b"te" and size > 2
                                            and line[2] in (32, 9, 58)):  # space, tab, colon
                return None
        elif (first == _K and line[:10] == b"keep-alive") or (
                first == _P and line[:6] == b"proxy-") or (
                first == _U and line[:7] == b"upgrade") or (
                first == _X and line[:12] == b"x-request-id"):  # (the gateway sets its own)
            return None
        at += size + 2
    return scan if scan.length_framed or chunked else None


def _cut_lines(raw: bytes, at: int, end: int, other: int, other_end: int) -> bytes:
    """`raw` without the spans [at, end) and [other, other_end) (-1: no such span)."""
    if at < 0:
        at, end, other, other_end = other, other_end, -1, -1
    if at < 0:
        return raw
    if other < 0:
        return raw[:at] + raw[end:]
    if other < at:
        at, end, other, other_end = other, other_end, at, end
    return b"".join((raw[:at], raw[end:other], raw[other_end:]))


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
