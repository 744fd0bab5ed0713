"""One keep-alive HTTP/1.1 connection to a backend, parsing responses with httptools.

The response is pushed, callback by callback, into a `ResponseSink` (a relay writes straight to
the client from these callbacks: no queue and no task switch per chunk). Each response ends in
exactly one of `on_complete` or `on_lost`. `flush` follows a read that delivered the head, so
a sink may hold the head and send it with the body bytes of the same read, in one write.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

import httptools


class ResponseSink(Protocol):
    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...
    def on_body(self, chunk: bytes) -> None: ...
    def on_complete(self) -> None: ...
    def on_lost(self, reason: str) -> None: ...
    def flush(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._sink: ResponseSink | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_in_this_read = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.reusable = True  # a fresh connection is as good as an idle one
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._sink is None:
            # Bytes nobody asked for: the connection is out of sync and cannot be reused.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("malformed response from backend")
            return
        if self._head_in_this_read:
            self._head_in_this_read = False
            if self._sink is not None:
                self._sink.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._sink is not None:
            self._fail("backend closed the connection" if exc is None
                       else f"backend connection lost ({exc.__class__.__name__})")

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._head_in_this_read = True
        if self._sink is not None:
            self._sink.on_head(self._parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self._sink is not None:
            self._sink.on_body(body)

    def on_message_complete(self) -> None:
        sink, self._sink = self._sink, None
        self._headers = []
        self.reusable = self._parser.should_keep_alive() and not self.closed
        if sink is not None:
            sink.on_complete()

    # -- use -------------------------------------------------------------------------------

    def send(self, data: bytes | list[bytes], sink: ResponseSink) -> None:
        """Write one request; its response goes to `sink`. The connection becomes `reusable`
        only once that response is complete and allowed keep-alive."""
        assert self._sink is None and self.transport is not None
        self._sink = sink
        self.reusable = False
        if isinstance(data, bytes):
            self.transport.write(data)
        else:
            self.transport.writelines(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close and never reuse; an in-progress response is abandoned silently."""
        self._sink = None
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _fail(self, reason: str) -> None:
        sink, self._sink = self._sink, None
        self.close()
        if sink is not None:
            sink.on_lost(reason)
