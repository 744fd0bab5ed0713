"""One keep-alive HTTP/1.1 connection to a backend; httptools validates and frames responses,
and each goes to the sink its request named (sink.py: the modes, and what the sink hears).

Rules: bytes nobody asked for, or a second message in the read that ended the first, mean the
connection is out of sync: it is never reused, and a raw response sharing its last read with
them is failed rather than relayed (where one ends is not known there). A head longer than
`MAX_HEAD` fails its response.
"""

from __future__ import annotations

import asyncio
from typing import Final

import httptools

from warden.upstream.batch import WriteBatch
from warden.upstream.sink import BodyMode, NativeSink, ResponseSink, SinkAdapter

# The longest response head taken (status line, headers, any 1xx heads before them); a longer
# one fails the response. vLLM's are a few hundred bytes; nginx takes 4-8 KB by default.
MAX_HEAD: Final = 64 * 1024


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
        self._stray = False         # another message began in the read that ended this one
        self._interim = False       # the message being parsed is a 1xx (skipped whole)
        self._keep_alive = False
        self._head = b""            # the response's head (read again if the backend closes)

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
        if self._reading_head and len(self._head_buf) > MAX_HEAD:
            self._fail(f"response head over {MAX_HEAD // 1024} KiB from backend")
            return
        complete = self._complete
        if complete:  # reset for the next response before the sink hears of this one's end
            self._sink = None
            self.reusable = self._keep_alive and not self.closed
            self._reading_head = True
            self._complete = False
            if self._stray and self._raw:
                # Its raw bytes and the stray ones arrived as one piece, and where one ends
                # is not known here (chunked framing): none of them may reach the client.
                self._raw = self._stray = False
                self.close()
                sink.on_lost("backend sent bytes after its response")
                return
            self._stray = False
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
        if self._sink is None:
            return
        if exc is None and not self._reading_head and _ends_at_close(self._head):
            self._end_at_close()
        else:
            self._fail("backend closed the connection" if exc is None
                       else f"backend connection lost ({exc.__class__.__name__})")

    def _end_at_close(self) -> None:
        """A body framed by the connection's end (HTTP/1.0 style: no Content-Length, not
        chunked) is complete: httptools cannot be told of the end, so it is said here."""
        sink, self._sink = self._sink, None
        assert sink is not None  # (the caller's check)
        if self._raw:
            self._raw = False
            sink.on_raw(b"", True)
        else:
            sink.on_complete()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second message in the read that ended the first: stray (its
            self._stray = True  # head may be partial, so no later callback need tell)
            self._keep_alive = False

    def on_headers_complete(self) -> None:
        if self._complete:  # a stray second response's (`on_message_begin` marked it)
            return
        buf = self._head_buf
        start = self._head_start
        first = buf[start]  # (an int: a comparison, where `startswith` parses arguments)
        if first == 13 or first == 10:  # empty lines before the status line
            start = len(buf) - len(buf[start:].lstrip(b"\r\n"))
        end = buf.find(b"\r\n\r\n", start)
        if self._parser.get_status_code() < 200:  # an interim response (1xx): skip it
            self._head_start = end + 4
            self._interim = True
            return
        self._reading_head = False
        self._head_buf = b""
        self._head_start = 0
        head = self._head = buf[start:end + 2]  # (kept: read again only if it is closed)
        sink = self._sink
        if sink is not None:
            mode = self._pieces = sink.on_head(self._parser.get_status_code(), head)
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
        if self._complete:  # the end of a stray second response (`on_message_begin`)
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


def _ends_at_close(head: bytes) -> bool:
    """Whether a response's body is framed by the connection's end: it has one (not 204 or
    304: a 1xx never gets here) and says neither its length nor that it is chunked."""
    lower = head.lower()
    return not (lower.startswith((b"http/1.1 204", b"http/1.0 204", b"http/1.1 304",
                                  b"http/1.0 304"))
                or b"\ncontent-length:" in lower or b"\ntransfer-encoding:" in lower)
