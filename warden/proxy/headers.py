"""Header rules for both directions (RFC 9110 §7.6.1: hop-by-hop headers are not forwarded,
nor is any header the `Connection` header names)."""

from __future__ import annotations

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
    b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization",
})

# Set by the gateway itself on the way up; the client's copies are dropped or merged.
_REWRITTEN_UP = HOP_BY_HOP | {b"host", b"content-length", b"x-request-id", b"x-forwarded-for",
                              b"expect"}
# Framing is the gateway's own on the way down; upstream ids are replaced by the gateway's.
_REWRITTEN_DOWN = HOP_BY_HOP | {b"content-length", b"x-request-id", b"date"}


def _connection_listed(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed = [value for name, value in headers if name == b"connection"]
    if not listed:
        return frozenset()
    return frozenset(t.strip().lower() for v in listed for t in v.split(b",") if t.strip())


def upstream_request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                     body: bytes, *, host: bytes, request_id: bytes, client_ip: str,
                     api_key: str | None) -> list[bytes]:
    """The request as written to the backend: head, then body (written with writelines, so a
    large body is never copied)."""
    drop = _REWRITTEN_UP | _connection_listed(headers)
    if api_key is not None:
        drop = drop | {b"authorization"}
    forwarded_for = client_ip.encode()
    lines = [method, b" ", target, b" HTTP/1.1\r\nhost: ", host, b"\r\n"]
    for name, value in headers:
        if name in drop:
            if name == b"x-forwarded-for":
                forwarded_for = value + b", " + forwarded_for
            continue
        lines += (name, b": ", value, b"\r\n")
    if api_key is not None:
        lines += (b"authorization: Bearer ", api_key.encode(), b"\r\n")
    lines += (b"x-request-id: ", request_id, b"\r\nx-forwarded-for: ", forwarded_for,
              b"\r\ncontent-length: ", str(len(body)).encode(), b"\r\n\r\n")
    return [b"".join(lines), body]


def downstream_headers(headers: list[tuple[bytes, bytes]], *, status: int, request_id: bytes,
                       upstream_addr: bytes) -> list[tuple[bytes, bytes]]:
    drop = _REWRITTEN_DOWN | _connection_listed(headers)
    out = [(name, value) for name, value in headers if name not in drop]
    out += ((b"x-request-id", request_id), (b"x-upstream-addr", upstream_addr),
            (b"x-upstream-status", str(status).encode()))
    return out


def body_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The Content-Length of a response that is not chunked, else None."""
    length = None
    for name, value in headers:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length" and value.isdigit():
            length = int(value)
    return length


def is_event_stream(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False
