"""The relay: upstream response → client, as it arrives, and the one place an exchange ends.

A `Relay` is both the upstream connection's `ResponseSink` and the client connection's
`ClientWatcher`. Whatever happens first — the response completes, the backend drops, the client
leaves, a timeout fires, the gateway shuts down — calls `_end` once, which calls `on_end` once;
every later event is ignored (seed 002: a stream's end is handled exactly once, whatever order
the events come in).

Timeouts are checked by the forwarder's ticker (`check_timeout`), not by a timer per request:
idleness is "no new bytes since the last tick", so the hot path reads no clock per chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from warden.edge.server import HttpConnection
from warden.proxy import headers as hdr
from warden.stream.observer import Ending, StreamObserver
from warden.upstream.connection import UpstreamConnection


class Relay:
    __slots__ = ("_bytes_at_tick", "_client", "_first_byte_timeout", "_idle_timeout", "_on_end",
                 "_request_id", "_upstream_addr", "body_bytes", "conn", "ended", "ending",
                 "first_byte_at", "head_sent", "last_progress_at", "lost_reason", "observer",
                 "sent_at", "status")

    def __init__(self, client: HttpConnection, conn: UpstreamConnection, *, request_id: bytes,
                 upstream_addr: bytes, first_byte_timeout: float, idle_timeout: float,
                 on_end: Callable[[Relay], None]):
        self._client = client
        self.conn = conn
        self._request_id = request_id
        self._upstream_addr = upstream_addr
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._on_end = on_end
        self.ended = False
        self.ending: Ending | None = None
        self.head_sent = False
        self.status = 0
        self.sent_at = 0.0
        self.first_byte_at: float | None = None
        self.last_progress_at = 0.0
        self.body_bytes = 0
        self._bytes_at_tick = 0
        self.observer: StreamObserver | None = None
        self.lost_reason: str | None = None

    def start(self, request: list[bytes]) -> None:
        """Send the request and start watching both sides."""
        self.sent_at = self.last_progress_at = time.monotonic()
        if self._client.closed:
            self.on_client_lost()
            return
        self._client.watcher = self
        self.conn.send(request, self)

    # -- upstream events (ResponseSink) ----------------------------------------------------

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.ended:
            return
        self.status = status
        self.first_byte_at = self.last_progress_at = time.monotonic()
        if hdr.is_event_stream(headers):
            self.observer = StreamObserver(time.monotonic)
        out = hdr.downstream_headers(headers, status=status, request_id=self._request_id,
                                     upstream_addr=self._upstream_addr)
        self._client.start_response(status, out, hdr.body_length(headers))
        self.head_sent = True

    def on_body(self, chunk: bytes) -> None:
        if self.ended:
            return
        self._client.write(chunk)
        self.body_bytes += len(chunk)
        if self.observer is not None:
            self.observer.feed(chunk)

    def flush(self) -> None:
        if not self.ended:
            self._client.flush()

    def on_complete(self) -> None:
        if self.ended:
            return
        self._client.end_response()
        self._end(Ending.UPSTREAM_COMPLETE)

    def on_lost(self, reason: str) -> None:
        if self.ended:
            return
        self.lost_reason = reason
        self._cut_client(reason, "upstream_disconnected")
        self._end(Ending.UPSTREAM_LOST)

    # -- client events (ClientWatcher) -----------------------------------------------------

    def on_client_lost(self) -> None:
        if self.ended:
            return
        # Closing the upstream socket is how vLLM learns to abort and free the KV cache.
        self.conn.close()
        self._end(Ending.CLIENT_LOST)

    def on_client_pause(self) -> None:
        self.conn.pause_reading()

    def on_client_resume(self) -> None:
        self.conn.resume_reading()

    # -- timeouts and cancellation ---------------------------------------------------------

    def check_timeout(self, now: float) -> None:
        """Called every tick. Ends the exchange if the first byte or the next byte is late."""
        if self.ended:
            return
        if not self.head_sent:
            if now - self.sent_at < self._first_byte_timeout:
                return
            reason = f"no response from the backend within {self._first_byte_timeout:g}s"
        else:
            if self.body_bytes != self._bytes_at_tick:
                self._bytes_at_tick = self.body_bytes
                self.last_progress_at = now
                return
            if now - self.last_progress_at < self._idle_timeout:
                return
            reason = f"no data from the backend for {self._idle_timeout:g}s"
        self.lost_reason = reason
        self.conn.close()
        self._cut_client(reason, "upstream_timeout")
        self._end(Ending.TIMED_OUT)

    def cancel(self) -> None:
        """The gateway abandons the exchange (shutdown past its grace period)."""
        if self.ended:
            return
        self.conn.close()
        if self.head_sent:
            self._client.abort()
        self._end(Ending.CANCELLED)

    # -- internals -------------------------------------------------------------------------

    def _cut_client(self, reason: str, code: str) -> None:
        """A response the backend will not finish: an SSE client gets a well-formed error
        event and a properly ended stream; any other body cannot be repaired, so the client
        connection is reset. Before the head, the forwarder answers with an error instead."""
        if not self.head_sent:
            return
        if self.observer is not None:
            event = orjson.dumps({"error": {"message": reason, "type": "upstream_error",
                                            "param": None, "code": code}})
            self._client.write(b"data: " + event + b"\n\n")
            self._client.end_response()
        else:
            self._client.abort()

    def _end(self, ending: Ending) -> None:
        self.ended = True
        self.ending = ending
        if self._client.watcher is self:
            self._client.watcher = None
        self._on_end(self)
