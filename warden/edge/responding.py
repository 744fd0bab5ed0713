"""The response half of a client connection: the current request's answer, as bytes.

Rules: every byte leaves through the server's write batch, at the end of the loop's turn
(upstream.batch: a client is woken once per turn, not once per response); a head is held
until the first body bytes (or a flush), so a small response leaves in one send; the end of
the response (`respond`, `end_response`) frees the connection for the next request; HTTP/1.0
clients get no chunked framing (their bodies end with the connection).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from warden.edge import wire
from warden.upstream.batch import WriteBatch

if TYPE_CHECKING:
    from warden.edge.contracts import ClientStream
    from warden.edge.request import HttpRequest
    from warden.edge.server import HttpServer


class NativeWriter:
    """What a relay calls per read of a body it relays raw (`ClientStream`'s `start_raw`,
    `write`, `end_response`), as C calls through the class's table (compiled), where one
    through the protocol is a Python method call (~300 instructions, per chunk). The gateway's
    client connection is one (`ResponseWriter`); any other client (a test's) is wrapped in a
    `WriterAdapter` (`native_writer`)."""

    def start_raw(self, head: bytes) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def end_response(self, data: bytes = b"") -> None:
        raise NotImplementedError

    def paused(self) -> bool:
        """The client's socket buffer is full (`ClientStream.writing_paused`)."""
        raise NotImplementedError


class WriterAdapter(NativeWriter):
    """A client that is not a `NativeWriter`, behind its face."""

    def __init__(self, client: ClientStream):
        self.client = client

    def start_raw(self, head: bytes) -> None:
        self.client.start_raw(head)

    def write(self, data: bytes) -> None:
        self.client.write(data)

    def end_response(self, data: bytes = b"") -> None:
        self.client.end_response(data)

    def paused(self) -> bool:
        return self.client.writing_paused


def native_writer(client: ClientStream) -> NativeWriter:
    return client if isinstance(client, NativeWriter) else WriterAdapter(client)


class ResponseWriter(NativeWriter):
    """Mixed into `HttpConnection`, which provides the state below and `_response_complete`."""

    transport: asyncio.Transport | None
    _writes: WriteBatch  # every write goes through it (see upstream.batch)
    closed: bool
    current: HttpRequest | None
    http11: bool | None
    _server: HttpServer
    _keep_alive: bool
    _chunked: bool
    _held_head: bytes
    _response_started: bool
    writing_paused: bool

    def _response_complete(self) -> None:
        raise NotImplementedError

    def paused(self) -> bool:
        return self.writing_paused

    def respond(self, status: int, headers: bytes, body: bytes) -> None:
        """Send a whole response with a Content-Length (without the body for HEAD).
        `headers` is a rendered header block (see `wire.header_block`)."""
        if not self.closed and self.transport is not None:
            self._response_started = True
            request = self.current
            head_only = request is not None and request.method_bytes == b"HEAD"
            self._writes.add(self.transport, b"".join((
                wire.status_line(status), headers, self._server.date_line,
                b"" if self._keep_alive else wire.CONNECTION_CLOSE,
                wire.content_length(len(body)), wire.CRLF, b"" if head_only else body)))
        self._response_complete()

    def start_response(self, status: int, headers: bytes, length: int | None = None) -> None:
        """Prepare the head; the body follows through `write`. Without a length the body is
        chunked (HTTP/1.1) or ends with the connection (HTTP/1.0). The head leaves with the
        first `write`, `end_response` or `flush`."""
        self._response_started = True
        if length is not None:
            framing = wire.content_length(length)
            self._chunked = False
        elif self.http11:
            framing = wire.CHUNKED
            self._chunked = True
        else:
            framing = b""
            self._chunked = False
            self._keep_alive = False
        self._held_head = b"".join((
            wire.status_line(status), headers, self._server.date_line,
            b"" if self._keep_alive else wire.CONNECTION_CLOSE, framing, wire.CRLF))

    def start_raw(self, head: bytes) -> None:
        """Prepare a head that is complete but for the blank line (status line included),
        for a body that `write` will pass on exactly as given (its framing included)."""
        self._response_started = True
        self._chunked = False
        extra = self._server.extra_lines  # (the config's lines: usually none)
        if extra:
            head += extra
        self._held_head = head + (wire.CRLF if self._keep_alive
                                  else wire.CONNECTION_CLOSE + wire.CRLF)

    def write(self, data: bytes) -> None:
        if self.closed or not data or self.transport is None:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        if self._held_head:
            data = self._held_head + data
            self._held_head = b""
        self._writes.add(self.transport, data)

    def flush(self) -> None:
        """Send a held head now (the body is not coming in this same read)."""
        if self._held_head and not self.closed and self.transport is not None:
            self._writes.add(self.transport, self._held_head)
        self._held_head = b""

    def end_response(self, data: bytes = b"") -> None:
        """Send `data` (if any) as the last of the body, and end the response."""
        if not self.closed and self.transport is not None:
            if self._chunked:
                if data:
                    data = b"%x\r\n%b\r\n" % (len(data), data)
                data += wire.LAST_CHUNK
            if self._held_head:
                data = self._held_head + data
            if data:
                self._writes.add(self.transport, data)
        self._held_head = b""
        self._response_complete()

    def abort(self) -> None:
        """Drop the connection (reset), e.g. when a response cannot be completed."""
        self._keep_alive = False
        self._held_head = b""
        self.current = None
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _json_head(self, client_id: bytes | None) -> bytes:
        """The JSON content type, with an X-Request-Id when the server has ids to give."""
        request_id = self._server.request_id
        if request_id is None:
            return wire.JSON
        return wire.JSON + b"x-request-id: " + request_id(client_id) + wire.CRLF
