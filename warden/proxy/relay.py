"""The relay: one proxied exchange, from admission to its single end.

A `Relay` is the exchange's record (an `Exchange`) and its behaviour: the upstream connection's
`ResponseSink` (bytes to the client as they arrive) and the client connection's `ClientWatcher`.
Whatever comes first (the response completes, the backend drops, the client leaves, a timeout
fires, the gateway shuts down) calls `_end` once, which hands the relay back to its owner once;
every later event is ignored: a stream's end is handled exactly once, in any order of events.

Timeouts are checked by the forwarder's ticker (`check_timeout`), not by a timer per request:
idleness is "no progress since the last tick", so the hot path reads no clock per chunk.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

from warden.config.schema import TimeoutsSpec
from warden.edge.contracts import ClientStream
from warden.edge.request import HttpRequest
from warden.edge.responding import native_writer
from warden.exchange import Capture, Exchange
from warden.fleet.backend import Backend
from warden.proxy import scrub
from warden.proxy.headers import parse_head, passthrough_head, response_head
from warden.stream.observer import Ending, StreamObserver
from warden.stream.usage_strip import UsageStripper
from warden.upstream.batch import WriteBatch
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode

monotonic: Final = time.monotonic  # (compiled: no attribute look-up per call)


class RelayOwner(Protocol):
    timeouts: TimeoutsSpec
    capture: int  # a Capture: what of the response to keep for the recorder
    expose_upstream: bool  # responses show the backend (X-Upstream-Addr, its Server header)
    scrub_errors: bool  # error texts that show the server's insides are withheld (scrub)
    @property
    def writes(self) -> WriteBatch | None: ...  # how requests are written upstream (None: at once)

    def relay_ended(self, relay: Relay, ending: str) -> None: ...  # once per relay


class Relay(Exchange):
    # Per-request defaults live on the class: __init__ stores only what differs.
    sent_to: Backend              # (these two are set by `send`, before any event comes)
    conn: UpstreamConnection
    ended = False
    ending: str | None = None
    head_sent = False
    body_bytes = 0
    progress = 0                  # +1 per head or body chunk: what the ticker watches
    last_progress_at = 0.0
    _progress_at_tick = 0
    observer: StreamObserver | None = None
    lost_reason: str | None = None
    raw = False                   # the body is relayed as the backend framed it
    last_raw = b""                # the last raw bytes relayed (is the stream cut cleanly?)
    held: scrub.HeldError | None = None  # a non-2xx body, looked at before the client sees it
    strip: UsageStripper | None = None  # takes the usage event the client did not ask for

    def __init__(self, request: HttpRequest, client: ClientStream, request_id: bytes,
                 owner: RelayOwner):
        super().__init__(request_id, request.path, request.client_ip, request.received_at)
        self.request = request
        self.client = client
        self._writer = native_writer(client)   # (per chunk: C calls, edge.responding)
        self._owner = owner

    def send(self, backend: Backend, conn: UpstreamConnection, data: list[bytes],
              now: float) -> None:
        """Send the request to `backend` over `conn` (`now`: monotonic); watch both sides."""
        self.sent_to = backend
        self.backend = backend.name
        self.conn = conn
        self.sent_at = self.last_progress_at = now
        if self.client.closed:
            self.on_client_lost()
            return
        self.client.watcher = self
        if self._writer.paused():   # (an answer before this one filled its buffer)
            self.on_client_pause()
        conn.send(data, self, self._owner.writes)

    # -- upstream events (ResponseSink) ----------------------------------------------------
    def on_head(self, status: int, head: bytes) -> int:
        """Start the client's response; say how its body comes (a `BodyMode`): raw, as the
        backend framed it (one write per read), or decoded and re-framed (an HTTP/1.0 client,
        a head to rewrite). An event stream is observed from its de-chunked pieces in both."""
        if self.ended:
            return BodyMode.DECODED
        self.status = status
        self.progress += 1
        self.head_sent = True
        self.first_byte_at = monotonic()
        capture = self._owner.capture
        if status >= 400:  # (a 2xx costs this one comparison)
            if status >= 500 and not capture:
                capture = Capture.BODIES  # a 5xx's body says whether the engine died
            held = self.held = scrub.hold(head) if self._owner.scrub_errors else None
            if held is not None:  # (None for an event stream)
                if capture:
                    self.captured = []  # the record and the forensics read the original
                return BodyMode.DECODED
        target = self.sent_to.target
        expose = self._owner.expose_upstream
        passed = passthrough_head(head, status, self.request_id, target, expose)
        if passed is not None and self.client.http11 and self.strip is None:
            block, event_stream, length_framed = passed
            self.raw = True
            block = block + self.response_headers if self.response_headers else block
            self._writer.start_raw(block)
            if event_stream:  # (its pieces come to `observe_piece`)
                self.observer = StreamObserver(monotonic)
                if capture == Capture.STREAMS:
                    self.captured = []
                return BodyMode.RAW_OBSERVED
            if capture and length_framed:  # (raw chunked bytes would need decoding)
                self.captured = []
            return BodyMode.RAW
        block, length, event_stream = response_head(parse_head(head), status,
                                                    self.request_id, target, expose)
        block += self.response_headers  # (the gateway's own lines: usually none)
        if event_stream:
            self.observer = StreamObserver(monotonic)
        if capture == Capture.STREAMS or (capture and not event_stream):
            self.captured = []
        self.client.start_response(status, block, length)
        return BodyMode.DECODED

    def on_raw(self, data: bytes, last: bool) -> None:
        if self.ended:
            return
        self.body_bytes += len(data)
        if self.captured is not None and self.observer is None:
            self.keep(data)
        if last:
            self._writer.end_response(data)
            self._end(Ending.UPSTREAM_COMPLETE)
        else:
            self._writer.write(data)
            self.progress += 1
            self.last_raw = data

    def on_body(self, chunk: bytes) -> None:
        """A de-chunked piece of a decoded body (a raw one goes to `on_raw`)."""
        if self.ended:
            return
        held = self.held
        if held is not None:
            held.add(chunk)
            self.progress += 1
            if self.captured is not None:
                self.keep(chunk)
            return
        self._writer.write(chunk if self.strip is None else self.strip.feed(chunk))
        self.body_bytes += len(chunk)
        self.progress += 1
        if self.captured is not None:
            self.keep(chunk)
        observer = self.observer
        if observer is not None:
            observer.feed(chunk)

    def flush(self) -> None:
        if not self.ended:
            self.client.flush()

    def on_complete(self) -> None:
        if self.ended:
            return
        held = self.held
        if held is None:
            self._writer.end_response(self.strip.rest() if self.strip is not None else b"")
        else:
            self.error = held.answer(self.client, self.status, self.request_id,
                                     self.sent_to.target, self._owner.expose_upstream,
                                     self.response_headers)
        self._end(Ending.UPSTREAM_COMPLETE)

    def on_lost(self, reason: str) -> None:
        if self.ended:
            return
        self.lost_reason = reason
        self._cut_client(reason, "upstream_disconnected")
        self._end(Ending.UPSTREAM_LOST)

    # -- client events (ClientWatcher) -----------------------------------------------------
    def on_client_lost(self) -> None:
        if not self.ended:  # (closing the upstream socket is how vLLM learns to abort and
            self.conn.close()  # free the KV cache)
            self._end(Ending.CLIENT_LOST)

    def on_client_pause(self) -> None:
        self.conn.pause_reading()

    def on_client_resume(self) -> None:
        self.conn.resume_reading()

    # -- timeouts and cancellation ---------------------------------------------------------
    def check_timeout(self, now: float) -> None:
        """Called every tick. Ends the exchange if the first byte or the next byte is late:
        the backend's fault, unless its client had stopped reading (then the backend was not
        read: the client is dropped, and the backend not blamed)."""
        if self.ended:
            return
        timeouts = self._owner.timeouts
        if not self.head_sent:
            waited = timeouts.first_byte
            if now - self.sent_at < waited:
                return
            reason = f"no response from the backend within {waited:g}s"
        else:
            if self.progress != self._progress_at_tick:
                self._progress_at_tick = self.progress
                self.last_progress_at = now
                return
            waited = timeouts.idle
            if now - self.last_progress_at < waited:
                return
            reason = f"no data from the backend for {waited:g}s"
        if self._writer.paused():   # (the connection's own word: no copy of it kept here)
            self.lost_reason = f"the client read nothing for {waited:g}s"
            self.conn.close()
            self.client.abort()
            self._end(Ending.CLIENT_LOST)
            return
        self.lost_reason = reason
        self.conn.close()
        self._cut_client(reason, "upstream_timeout")
        self._end(Ending.TIMED_OUT)

    def cancel(self, reason: str | None = None) -> None:
        """The gateway abandons the exchange: shutdown past its grace period (the client is
        cut off), or an operator's abort (`reason`: the client is told, as `_cut_client`)."""
        if self.ended:
            return
        self.conn.close()
        if reason is not None:
            self.lost_reason = reason
            self._cut_client(reason, "aborted")
        elif self.head_sent:
            self.client.abort()
        self._end(Ending.CANCELLED)

    # -- internals -------------------------------------------------------------------------
    def observe_piece(self, piece: bytes) -> None:
        """A de-chunked piece of a raw event stream: kept (full capture), and observed."""
        if self.ended:
            return
        if self.captured is not None:
            self.keep(piece)
        observer = self.observer
        if observer is not None:
            observer.feed(piece)

    def _cut_client(self, reason: str, code: str) -> None:
        """A response the backend will not finish: an SSE client gets a well-formed error
        event and a properly ended stream, if what it got ends at an event's end; else, and
        for any other body, it cannot be repaired, so the client connection is reset. Before
        the head, the owner answers with an error instead.

        A raw-relayed event stream carries the backend's chunk framing, so the error event
        goes in a chunk of its own — only if what was relayed ends exactly at the end of an
        event and of a chunk (`\n\n` then the chunk's CRLF)."""
        if not self.head_sent:
            return
        if self.held is not None:  # the client has seen nothing of it yet: answer now
            self.status = 502
            self.client.respond(502, *scrub.cut_answer(reason, code, self.request_id))
            return
        observer = self.observer
        if observer is None:
            self.client.abort()
            return
        event = scrub.cut_event(reason, code)
        if not self.raw:   # (what the client has is whole events: unless one was cut)
            if observer.pending != 0 and (self.strip is None or self.strip.passing):
                self.client.abort()
                return
            self.client.write(event)
            self.client.end_response()
        elif observer.pending == 0 and self.last_raw.endswith(b"\n\n\r\n"):
            self.client.end_response(b"%x\r\n%b\r\n0\r\n\r\n" % (len(event), event))
        else:
            self.client.abort()

    def _end(self, ending: str) -> None:
        self.ended = True
        self.ending = ending
        if self.client.watcher is self:
            self.client.watcher = None
        self._owner.relay_ended(self, ending)
