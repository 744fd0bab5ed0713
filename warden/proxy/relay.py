"""The relay: upstream response → client, as it arrives, and the one place an exchange ends.

A `Relay` is both the upstream connection's `ResponseSink` and the client connection's
`ClientWatcher`. Whatever happens first — the response completes, the backend drops, the client
leaves, a timeout fires — calls `_end` once; every later event is ignored (seed 002: a stream's
end must be handled exactly once, whatever order the events come in).
"""

from __future__ import annotations

import asyncio

import orjson

from warden.edge.server import HttpConnection
from warden.proxy import headers as hdr
from warden.stream.observer import Ending, StreamObserver
from warden.upstream.connection import UpstreamConnection


class Relay:
    __slots__ = ("_client", "_conn", "_first_byte_timeout", "_idle_timeout", "_loop",
                 "_request_id", "_upstream_addr", "_watchdog", "body_bytes", "done", "ended",
                 "ending", "first_byte_at", "head_sent", "last_activity", "lost_reason",
                 "observer", "sent_at", "status")

    def __init__(self, client: HttpConnection, conn: UpstreamConnection, *, request_id: bytes,
                 upstream_addr: bytes, first_byte_timeout: float, idle_timeout: float):
        self._loop = asyncio.get_running_loop()
        self._client = client
        self._conn = conn
        self._request_id = request_id
        self._upstream_addr = upstream_addr
        self._first_byte_timeout = first_byte_timeout
        self._idle_timeout = idle_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.done: asyncio.Future[Ending] = self._loop.create_future()
        self.ended = False
        self.ending: Ending | None = None
        self.head_sent = False
        self.status = 0
        self.sent_at = 0.0
        self.first_byte_at: float | None = None
        self.last_activity = 0.0
        self.body_bytes = 0
        self.observer: StreamObserver | None = None
        self.lost_reason: str | None = None

    def start(self, request: list[bytes]) -> None:
        """Send the request and start watching both sides."""
        self.sent_at = self.last_activity = self._loop.time()
        self._client.watcher = self
        self._conn.send(request, self)
        self._watchdog = self._loop.call_at(self.sent_at + self._first_byte_timeout,
                                            self._check_timeout)

    # -- upstream events (ResponseSink) ----------------------------------------------------

    def on_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self.ended:
            return
        self.status = status
        self.first_byte_at = self.last_activity = self._loop.time()
        if hdr.is_event_stream(headers):
            self.observer = StreamObserver()
        out = hdr.downstream_headers(headers, status=status, request_id=self._request_id,
                                     upstream_addr=self._upstream_addr)
        self._client.start_response(status, out, hdr.body_length(headers))
        self.head_sent = True
        self._rearm(self.first_byte_at + self._idle_timeout)

    def on_body(self, chunk: bytes) -> None:
        if self.ended:
            return
        self._client.write(chunk)
        self.body_bytes += len(chunk)
        now = self.last_activity = self._loop.time()
        if self.observer is not None:
            self.observer.feed(chunk, now)

    def on_complete(self) -> None:
        if self.ended:
            return
        self._client.end_response()
        self._end(Ending.UPSTREAM_COMPLETE)

    def on_lost(self, reason: str) -> None:
        if self.ended:
            return
        self.lost_reason = reason
        self._cut_client(reason, "upstream_disconnected", 502)
        self._end(Ending.UPSTREAM_LOST)

    # -- client events (ClientWatcher) -----------------------------------------------------

    def on_client_lost(self) -> None:
        if self.ended:
            return
        # Closing the upstream socket is how vLLM learns to abort and free the KV cache.
        self._conn.close()
        self._end(Ending.CLIENT_LOST)

    def on_client_pause(self) -> None:
        self._conn.pause_reading()

    def on_client_resume(self) -> None:
        self._conn.resume_reading()

    # -- timeouts and cancellation ---------------------------------------------------------

    def _check_timeout(self) -> None:
        self._watchdog = None
        if self.ended:
            return
        now = self._loop.time()
        if self.head_sent:
            deadline = self.last_activity + self._idle_timeout
            what = f"no data from the backend for {self._idle_timeout:g}s"
        else:
            deadline = self.sent_at + self._first_byte_timeout
            what = f"no response from the backend within {self._first_byte_timeout:g}s"
        if now < deadline:
            self._rearm(deadline)
            return
        self.lost_reason = what
        self._conn.close()
        self._cut_client(what, "upstream_timeout", 504)
        self._end(Ending.TIMED_OUT)

    def cancel(self) -> None:
        """The gateway abandons the exchange (its task was cancelled, e.g. on shutdown)."""
        if self.ended:
            return
        self._conn.close()
        if self.head_sent:
            self._client.abort()
        self._end(Ending.CANCELLED)

    # -- internals -------------------------------------------------------------------------

    def _cut_client(self, reason: str, code: str, status: int) -> None:
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

    def _rearm(self, when: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = self._loop.call_at(when, self._check_timeout)

    def _end(self, ending: Ending) -> None:
        self.ended = True
        self.ending = ending
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._client.watcher is self:
            self._client.watcher = None
        self.done.set_result(ending)
