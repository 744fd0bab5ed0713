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

from warden.config.schema import TimeoutsSpec
from warden.edge.server import HttpConnection
from warden.proxy.headers import ResponseHead, UpstreamTarget
from warden.stream.observer import Ending, StreamObserver
from warden.upstream.connection import UpstreamConnection


class Relay:
    # Per-request defaults live on the class: __init__ stores only what differs.
    ended = False
    ending: str | None = None
    head_sent = False
    status = 0
    sent_at = 0.0
    first_byte_at: float | None = None
    last_progress_at = 0.0
    body_bytes = 0
    _bytes_at_tick = 0
    observer: StreamObserver | None = None
    lost_reason: str | None = None

    def __init__(self, client: HttpConnection, conn: UpstreamConnection, request_id: bytes,
                 target: UpstreamTarget, timeouts: TimeoutsSpec,
                 on_end: Callable[[Relay], None]):
        self._client = client
        self.conn = conn
        self._request_id = request_id
        self._target = target
        self._timeouts = timeouts
        self._on_end = on_end

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
        head = ResponseHead(headers, status, self._request_id, self._target)
        if head.event_stream:
            self.observer = StreamObserver(time.monotonic)
        self._client.start_response(status, head.block, head.length)
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
            limit = self._timeouts.first_byte
            if now - self.sent_at < limit:
                return
            reason = f"no response from the backend within {limit:g}s"
        else:
            if self.body_bytes != self._bytes_at_tick:
                self._bytes_at_tick = self.body_bytes
                self.last_progress_at = now
                return
            limit = self._timeouts.idle
            if now - self.last_progress_at < limit:
                return
            reason = f"no data from the backend for {limit:g}s"
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

    def _end(self, ending: str) -> None:
        self.ended = True
        self.ending = ending
        if self._client.watcher is self:
            self._client.watcher = None
        self._on_end(self)
