"""One keep-alive HTTP/1.1 connection to a backend; httptools validates and frames responses.

A response goes to a `ResponseSink` in one of three modes (`BodyMode`), which the sink picks
when the head arrives (the value `on_head` returns):

- RAW: the body is handed over as the backend sent it, framing included (`on_raw`, once per
  socket read; `last` is True on the call that carries the end of the response, so a small
  response costs the sink one call), so a relay forwards it with no per-chunk work;
- RAW_OBSERVED: as RAW, and the de-chunked pieces also go to the sink's `observe_piece`
  (during the read, before that read's `on_raw`), for a sink that watches what it relays (an
  SSE observer);
- DECODED: the body reaches the sink only de-chunked (`on_body`), for a sink that must
  re-frame it; `flush` follows a read that delivered the head, and `on_complete` the read
  that delivered the end.

The head is given raw too (status line and header lines, without the blank line): the sink
reads only the few headers it needs. Each response ends in exactly one of: `on_raw(..., True)`
or `on_complete` (after the last body bytes were handed over), or `on_lost`. The connection is
ready for reuse before that last call, so the sink may release it from there.

The connection calls its sink as a `NativeSink` (C calls, per read and per piece); a sink that
is only a `ResponseSink` (a test's, the replayer's) is wrapped in a `SinkAdapter` once, when
sent, so no call site asks which kind it has.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

import httptools

from warden.upstream.batch import WriteBatch


class BodyMode:
    """How a sink takes a response body (plain ints: read per response)."""

    DECODED: Final = 0
    RAW: Final = 1
    RAW_OBSERVED: Final = 2


class ResponseSink(Protocol):
    def on_head(self, status: int, head: bytes) -> int: ...  # a BodyMode
    def on_raw(self, data: bytes, last: bool) -> None: ...
    def observe_piece(self, piece: bytes) -> None: ...  # RAW_OBSERVED only
    def on_body(self, chunk: bytes) -> None: ...
    def flush(self) -> None: ...
    def on_complete(self) -> None: ...
    def on_lost(self, reason: str) -> None: ...


class NativeSink:
    """A `ResponseSink` the connection calls with C calls (compiled), where one through the
    protocol is a Python method call (~300 instructions, per read or piece). The gateway's
    relay is one (through `exchange.Exchange`); any other sink is wrapped in a `SinkAdapter`."""

    def on_head(self, status: int, head: bytes) -> int:
        raise NotImplementedError

    def on_raw(self, data: bytes, last: bool) -> None:
        raise NotImplementedError

    def observe_piece(self, piece: bytes) -> None:
        raise NotImplementedError

    def on_body(self, chunk: bytes) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def on_complete(self) -> None:
        raise NotImplementedError

    def on_lost(self, reason: str) -> None:
        raise NotImplementedError


class SinkAdapter(NativeSink):
    """A sink that is not a `NativeSink`, behind its face (each call forwarded as is)."""

    def __init__(self, sink: ResponseSink):
        self.sink = sink

    def on_head(self, status: int, head: bytes) -> int:
        return self.sink.on_head(status, head)

    def on_raw(self, data: bytes, last: bool) -> None:
        self.sink.on_raw(data, last)

    def observe_piece(self, piece: bytes) -> None:
        self.sink.observe_piece(piece)

    def on_body(self, chunk: bytes) -> None:
        self.sink.on_body(chunk)

    def flush(self) -> None:
        self.sink.flush()

    def on_complete(self) -> None:
        self.sink.on_complete()

    def on_lost(self, reason: str) -> None:
        self.sink.on_lost(reason)


class UpstreamConnection:
    """An asyncio protocol (by its methods, not by inheritance: see `HttpConnection`)."""

    __deletable__ = ["_parser"]  # (for mypyc: `connection_lost` deletes it)

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.reading_paused = False   # by its sink (its client's back-pressure)
        self.idle_since = 0.0
        self._sink: NativeSink | None = None
        self._parser = httptools.HttpResponseParser(self)
        # Per-response state (reset when a response completes: `data_received`).
        self._head_buf = b""        # bytes of the response so far, until its head is complete
        self._head_start = 0        # where the head begins in _head_buf (after any 1xx heads)
        self._reading_head = True
        self._raw = False           # on_raw gets the body as it came
        self._pieces = BodyMode.RAW  # the mode the de-chunked pieces follow (RAW: nowhere)
        self._head_ended_in_this_read = False   # decoded mode: flush after this read
        self._body_offset = 0       # raw mode: where, in the current read, the body begins
        self._data_len = 0
        self._complete = False
        self._interim = False       # the message being parsed is a 1xx (skipped whole)
        self._keep_alive = False

    # -- the asyncio protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reusable = True  # a fresh connection is as good as an idle one
        # (TCP_NODELAY: set by the loop on every TCP transport, as on the client side.)

    def data_received(self, data: bytes) -> None:
        sink = self._sink
        if sink is None:
            # Bytes nobody asked for: the connection is out of sync and cannot be reused.
            self.close()
            return
        if self._reading_head:
            self._head_buf += data
            self._data_len = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("malformed response from backend")
            return
        if self._sink is None:
            return
        complete = self._complete
        if complete:  # reset for the next response before the sink hears of this one's end
            self._sink = None
            self.reusable = self._keep_alive and not self.closed
            self._reading_head = True
            self._complete = False
        if self._raw:
            offset = self._body_offset
            if offset:
                self._body_offset = 0
                data = data[offset:]
            if complete:
                self._raw = False
                sink.on_raw(data, True)
            elif data:
                sink.on_raw(data, False)
        else:
            if self._head_ended_in_this_read:
                self._head_ended_in_this_read = False
                sink.flush()
            if complete:
                sink.on_complete()

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        pass  # (requests are written whole; the transport buffers a large body)

    def resume_writing(self) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        del self._parser  # it holds our callbacks: a cycle, freed now, not by the GC
        if self._sink is not None:
            self._fail("backend closed the connection" if exc is None
                       else f"backend connection lost ({exc.__class__.__name__})")

    # -- httptools callbacks ---------------------------------------------------------------

    def on_headers_complete(self) -> None:
        if self._complete:  # a second response in the read that ended the first: stray
            self._keep_alive = False
            return
        buf = self._head_buf
        start = self._head_start
        end = buf.find(b"\r\n\r\n", start)
        if self._parser.get_status_code() < 200:  # an interim response (1xx): skip it
            self._head_start = end + 4
            self._interim = True
            return
        self._reading_head = False
        self._head_buf = b""
        self._head_start = 0
        sink = self._sink
        if sink is not None:
            mode = self._pieces = sink.on_head(self._parser.get_status_code(),
                                               buf[start:end + 2])
            if mode == BodyMode.DECODED:
                self._raw = False
                self._head_ended_in_this_read = True
            else:
                self._raw = True
                # where, in this read, the body begins
                self._body_offset = end + 4 - (len(buf) - self._data_len)

    def on_body(self, body: bytes) -> None:
        pieces = self._pieces
        if pieces == BodyMode.RAW:
            return
        sink = self._sink
        if sink is not None:
            if pieces == BodyMode.RAW_OBSERVED:
                sink.observe_piece(body)
            else:
                sink.on_body(body)

    def on_message_complete(self) -> None:
        if self._interim:  # the end of a 1xx: the response is still to come
            self._interim = False
            return
        if self._complete:  # the end of a stray second response: never reuse this connection
            self._keep_alive = False
            return
        self._complete = True
        # (A stray response's body must not reach this one's sink.)
        self._pieces = BodyMode.RAW
        # Only meaningful now: once feed_data returns, llhttp has reset for the next message.
        self._keep_alive = self._parser.should_keep_alive()

    # -- use -------------------------------------------------------------------------------

    def send(self, data: list[bytes], sink: NativeSink | ResponseSink,
             batch: WriteBatch | None = None) -> None:
        """Write one request (through `batch`: at the end of the loop's turn); its response
        goes to `sink`. The connection becomes `reusable` only once that response is complete
        and allowed keep-alive."""
        transport = self.transport
        assert transport is not None, "send() before connection_made()"
        self._sink = sink if isinstance(sink, NativeSink) else SinkAdapter(sink)
        self.reusable = False
        if batch is None:
            transport.writelines(data)
        else:
            batch.add(transport, data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.reading_paused = False

    def close(self) -> None:
        """Close and never reuse; an in-progress response is abandoned silently."""
        self._sink = None
        self._pieces = BodyMode.RAW
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _fail(self, reason: str) -> None:
        sink, self._sink = self._sink, None
        self.close()
        if sink is not None:
            sink.on_lost(reason)
