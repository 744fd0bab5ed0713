"""The reading half of a client connection: httptools' callbacks, the request's bounds.

Bounds, however TCP splits the bytes: a head (request target and fields, as parsed) of at most
`max_header_bytes` in at most `max_header_count` fields, checked when it is complete (a head
still coming is measured by the bytes read: see `HttpConnection.data_received`). Cost rule:
nothing per field; per request, a few comparisons, and the head is measured field by field only
when the reads it came in were large enough for it to be too large. A body of at
most `max_body`, held in the server's `BodyBudget` as its bytes come (a Content-Length that
could not fit now is refused at its head, before it is sent), until its answer ends or the
connection is lost. A field that may have only one
value (`request.SINGLE_VALUED`) given twice is refused, never merged. A bound broken is an
exception raised in a callback: the connection answers it and closes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from warden.edge import wire
from warden.edge.budget import BodyBudget
from warden.edge.contracts import ServerLimits
from warden.edge.request import INTERPRETED, SINGLE_VALUED, HttpRequest
from warden.edge.responding import ResponseWriter
from warden.errors import HeadersTooLarge, InvalidRequest, PayloadTooLarge, WardenError
from warden.upstream.batch import WRITE_EOF

LONGEST: Final = 64   # the longest field name FieldNames keeps (the SDK's longest is 27)
# After answering a request that could not be read: how long to keep reading (and discarding)
# before closing, so the answer is not lost to a reset.
LINGER: Final = 2.0
# A body piece shorter than this is gathered with the next into one buffer rather than kept
# as an object of its own (~33 bytes of overhead each).
SMALL_PIECE: Final = 512


class FieldNames:
    """Field names as clients send them, lower-cased, shared by a server's connections: a
    name seen before costs a dict look-up, not `bytes.lower` (a Python method call when
    compiled, ~300 instructions) and the hash of a new object; the openai SDK sends sixteen
    fields a request. Bounded: only names of at most `LONGEST` bytes are kept (a head may be
    64 KiB), and past `most` of them (a client sending made-up ones) it starts over."""

    def __init__(self, most: int = 1024):
        self._lowered: dict[bytes, bytes] = {}
        self._most = most

    def lower(self, name: bytes) -> bytes:
        lowered = self._lowered.get(name)
        if lowered is None:
            lowered = name.lower()
            if len(name) > LONGEST:
                return lowered
            if len(self._lowered) >= self._most:
                self._lowered.clear()
            self._lowered[name] = lowered
        return lowered

    def __len__(self) -> int:
        return len(self._lowered)


class RequestReader(ResponseWriter):
    """Derived from by `HttpConnection`, which feeds the parser and completes each message."""

    _loop: asyncio.AbstractEventLoop

    def __init__(self, limits: ServerLimits, bodies: BodyBudget, names: FieldNames):
        self._names = names
        self._max_body = limits.max_body
        self._max_header_bytes = limits.max_header_bytes
        self._max_header_count = limits.max_header_count
        self._bodies = bodies
        # Per-request parsing state (reset when a message completes).
        self._url = b""
        self._fields: dict[bytes, bytes] = {}
        self._passed: list[bytes] = []
        self._in_head = True        # reading a request head (its size is bounded)
        self._head_read = 0         # bytes read while in the head (for a head still coming)
        self._read_size = 0         # of the read being parsed
        self._merged = 0            # repeated fields merged into one value (not in `_fields`)
        self._body: list[bytes] = []
        self._small = bytearray()   # small body pieces gathered (chunked: see `on_body`)
        self._body_size = 0
        self._trailer_bytes = 0     # a chunked body's trailer fields (bounded, not kept)
        self._reserved = 0          # in the budget for the body being read
        self._expect_continue = False
        self._queue: deque[HttpRequest] = deque()  # read, waiting for the one answered
        self._lingering = False     # a request could not be read: nothing more is
        self._refusal: WardenError | None = None   # its answer, waiting its turn: `_reject`

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        """Split as parsed (see `edge.request`): an interpreted field by name, any other
        rendered for forwarding. A chunked body's trailer fields (after the head) are
        dropped, not forwarded nor read (an `Authorization` there is no credential), and
        count against the head's bound."""
        if not self._in_head:
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > self._max_header_bytes:
                raise HeadersTooLarge("request trailer fields are too large")
            return
        name = self._names.lower(name)
        if name not in INTERPRETED:
            passed = self._passed  # (four appends: C calls; `+=` of a tuple builds one)
            passed.append(name)
            passed.append(b": ")
            passed.append(value)
            passed.append(b"\r\n")
            return
        fields = self._fields
        if name in fields:  # repeated: one list value (RFC 9110 §5.3), if it is a list
            if name in SINGLE_VALUED:
                raise InvalidRequest(f"the request has more than one {name.decode()} header "
                                     "field")
            self._merged += 1  # (bounded at once: each merge copies the value so far)
            if self._merged > self._max_header_count:
                raise self._too_many_fields()
            value = fields[name] + b", " + value
        elif name == b"content-length":
            if value.isdigit():  # (else the parser refuses it)
                self._check_body(int(value))
        elif name == b"expect":
            self._expect_continue = value.lower() == b"100-continue"
        fields[name] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        # A head can pass the limit only if the bytes read since it began, or the read it
        # ended in (it may have begun in it, after a pipelined request), did: else it is not
        # measured.
        if self._head_read + self._read_size > self._max_header_bytes \
                and self._head_size() > self._max_header_bytes:
            raise HeadersTooLarge("request headers are too large")
        if (len(self._passed) >> 2) + len(self._fields) + self._merged \
                > self._max_header_count:
            raise self._too_many_fields()
        if self._expect_continue and self.transport is not None:
            self._writes.add(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        size = self._body_size + len(body)
        self._body_size = size
        if size > self._reserved:  # held as it comes, not from its head: a head that only
            self._reserve_body(size)  # promised bodies held the budget from other clients
        pieces = self._body
        if len(body) >= SMALL_PIECE or not pieces:  # (most bodies come in one piece)
            if self._small:
                pieces.append(bytes(self._small))
                self._small = bytearray()
            pieces.append(body)
        else:  # (a bytes object each for a body sent 2 bytes a chunk took 20 times its size)
            small = self._small
            if not small and len(pieces[-1]) < SMALL_PIECE:
                small += pieces.pop()
            small += body

    def _check_body(self, size: int) -> None:
        """A Content-Length: 413 past `max_body`, 503 if the server's bodies have no room for
        it now (refused before it is sent; nothing is held until its bytes come: heads that
        promised 100 MiB bodies and sent none held the whole budget from other clients)."""
        if size > self._max_body:
            raise PayloadTooLarge(f"request body is larger than {self._max_body} bytes")
        bodies = self._bodies
        if bodies.held + size > bodies.limit:
            raise bodies.refusal(size, self._loop.time())

    def _reserve_body(self, size: int) -> None:
        """Hold room for `size` bytes of the body being read, or refuse it: 413 past
        `max_body`, 503 when the server's bodies have no room left."""
        if size > self._max_body:
            raise PayloadTooLarge(f"request body is larger than {self._max_body} bytes")
        more = size - self._reserved
        bodies = self._bodies
        if bodies.held + more > bodies.limit:
            raise bodies.refusal(more, self._loop.time())
        bodies.held += more
        self._reserved = size

    def _head_size(self) -> int:
        """The head's bytes as parsed: its target, and each field's name, value, ": " and
        CRLF (a merged repeat counts its ", " in place of a name)."""
        size = len(self._url) + sum(map(len, self._passed))
        for name, value in self._fields.items():
            size += len(name) + len(value) + 4
        return size

    def _too_many_fields(self) -> HeadersTooLarge:
        return HeadersTooLarge(f"the request has more than {self._max_header_count} header "
                               "fields")

    def _reject(self, error: WardenError) -> None:
        """Answer a request that could not be read, then close: the stream is out of sync.

        Lingering close (as nginx's): a client may still be sending (a body too large, a
        head too long); closing with its bytes unread would make the kernel reset the
        connection and could destroy the answer in flight. So: answer, half-close, discard
        what still comes, and close when the client does or after `LINGER` seconds. The
        requests read before it (pipelined) are answered first: it waits its turn."""
        if self.transport is None or self.closed or self._lingering:
            return
        refused = self._server.refused
        code = error.code or "invalid_request"
        refused[code] = refused.get(code, 0) + 1
        self._bodies.held -= self._reserved  # what is still coming is discarded
        self._reserved = 0
        self._body = []
        self._small = bytearray()
        self._lingering = True   # (what still comes is discarded)
        if self.current is not None or self._queue:  # (a half-close now would cut short the
            self._refusal = error                     # answers owed before it)
            return
        self._answer_refusal(error)

    def _answer_refusal(self, error: WardenError) -> None:
        transport = self.transport
        assert transport is not None
        body = error.envelope()
        self._writes.add(transport, b"".join((
            wire.status_line(error.status), self._json_head(None),
            wire.RETRY_AFTER if error.status == 503 else b"", wire.CONNECTION_CLOSE,
            wire.content_length(len(body)), wire.CRLF, body)))
        self._keep_alive = False
        self._writes.add(transport, WRITE_EOF)
        self._loop.call_later(LINGER, transport.close)
