"""How a response reaches whoever asked for it: the sink an `UpstreamConnection` (connection.py)
calls, and the mode it takes a body in (`BodyMode`).

A response goes to a `ResponseSink` in one of three modes, which the sink picks when the head
arrives (the value `on_head` returns):

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

from typing import Final, Protocol


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
