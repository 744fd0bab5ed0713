"""CORS (`cors.*`): browser pages of the configured origins may call the OpenAI endpoints.

A preflight (`OPTIONS`) is answered by the gateway (204) and never reaches a backend; an
actual request from an allowed origin gets `Access-Control-Allow-Origin` on whatever answers
it (the backend's response, a refusal, the gateway's own error), so the page can read errors
as well as results. An origin not allowed gets no CORS lines: the browser keeps the answer
from the page. Only requests that carry an `Origin` pay for any of it."""

from __future__ import annotations

from warden.config.http_schema import CorsSpec
from warden.edge.contracts import ClientStream
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_json

# What a page may read of an answer besides the simple headers.
EXPOSED = (b"x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
           b"x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
           b"x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after")


class Cors:
    def __init__(self, spec: CorsSpec):
        self._any = "*" in spec.allow_origins
        self._origins = frozenset(o.encode() for o in spec.allow_origins)
        self._preflight = (b"access-control-allow-methods: GET, POST, OPTIONS\r\n"
                           b"access-control-allow-headers: "
                           + ", ".join(spec.allow_headers).encode() + b"\r\n"
                           b"access-control-max-age: %d\r\n" % int(spec.max_age))

    def lines(self, request: HttpRequest) -> bytes:
        """The CORS lines for an actual request's answer (none without an allowed Origin)."""
        origin = request.header(b"origin")
        if not origin or not (self._any or origin in self._origins):
            return b""
        return (b"access-control-allow-origin: " + (b"*" if self._any else origin)
                + b"\r\nvary: origin\r\naccess-control-expose-headers: " + EXPOSED + b"\r\n")

    def preflight(self, request: HttpRequest, client: ClientStream, rid: bytes) -> None:
        """Answer an OPTIONS request: 200 (empty), with the permissions when its origin is
        allowed."""
        lines = self.lines(request)
        respond_json(client, 200, b"", rid, lines + self._preflight if lines else b"")
