"""A parsed client request, as the server protocol hands it to a handler.

Header fields are split as they are parsed, so that nothing downstream loops over all of them:
the few that the server or the gateway interprets (framing, hop-by-hop, identity, the content
type admission reads) go into `fields`, by lower-case name; every other field is end-to-end
and is kept in `passed`, already rendered for forwarding (`name`, `b": "`, `value`, `b"\\r\\n"`
per field, in order). A proxy forwards `passed` as it is and decides, field by field, only
what is in `fields`.
"""

from __future__ import annotations

INTERPRETED = frozenset({
    # framing and hop-by-hop (RFC 9110 §7.6.1)
    b"host", b"content-length", b"transfer-encoding", b"expect", b"connection", b"keep-alive",
    b"proxy-connection", b"te", b"trailer", b"upgrade", b"proxy-authorization",
    b"proxy-authenticate",
    # read or rewritten by the gateway
    b"content-type", b"x-request-id", b"x-forwarded-for", b"authorization",
    # credentials some OpenAI-compatible clients send instead of Authorization
    b"api-key", b"x-api-key",
})

# Fields that hold one value, not a list (RFC 9110 §5.3): given twice, the request is refused
# (400), never merged into "a, b" (two credentials would reach the backend as one). Host: RFC
# 9112 §3.2 requires it; Authorization and Content-Length: nginx refuses them too.
SINGLE_VALUED = frozenset({
    b"host", b"content-length", b"content-type", b"authorization", b"proxy-authorization",
    b"x-request-id", b"api-key", b"x-api-key",
})


class HttpRequest:
    """One complete HTTP/1.1 request. `method_bytes` and `target` are kept raw (they are
    forwarded as they came); `received_at` is `time.monotonic()` when its last byte arrived.
    A field repeated in `fields` holds its values joined with ", " (RFC 9110 §5.3)."""

    __slots__ = ("body", "client_ip", "fields", "keep_alive", "method", "method_bytes",
                 "passed", "path", "query", "received_at", "target")

    def __init__(self, method: bytes, target: bytes, fields: dict[bytes, bytes],
                 passed: list[bytes], body: bytes, keep_alive: bool, client_ip: str,
                 received_at: float):
        self.method_bytes = method
        self.method = method.decode("latin-1")
        self.target = target
        if 63 in target:  # "?" (a byte as an int: a memchr; a bytes `find` parses args)
            path, _, query = target.partition(b"?")
            self.path = path.decode("latin-1")
            self.query = query.decode("latin-1")
        else:
            self.path = target.decode("latin-1")
            self.query = ""
        self.fields = fields
        self.passed = passed
        self.body = body
        self.keep_alive = keep_alive
        self.client_ip = client_ip
        self.received_at = received_at

    def header(self, name: bytes) -> bytes | None:
        """A header's value by lower-case name (the first, for a repeated end-to-end one)."""
        value = self.fields.get(name)
        if value is not None:
            return value
        passed = self.passed
        for i in range(0, len(passed), 4):
            if passed[i] == name:
                return passed[i + 2]
        return None
