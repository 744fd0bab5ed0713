"""One client connection of the HTTP/1.1 server: raw asyncio protocol + httptools (no framework:
see DESIGN.md for what each stack costs).

One `HttpConnection` per client socket. Requests on a connection are served one at a time
(pipelined ones wait in order). A handler answers through the connection's response methods,
either at once (`respond`) or incrementally (`start_response`/`write`/`end_response`); the end
of the response, not the end of the handler, frees the connection for the next request.

A handler may be a plain function that starts the work and returns (the gateway's data path:
no task per request) or a coroutine function (run as a task; cold paths, the simulator). A
`ClientWatcher` set on the connection hears about client disconnects and write back-pressure,
which is how a relay aborts its upstream request or pauses reading it.

Its halves are stacked classes (mypyc allows a native class one base): `ResponseWriter`
(answers), `RequestReader` (the parser's callbacks and the request's bounds), then this one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Final

import httptools

from warden.edge.contracts import ClientWatcher
from warden.edge.reading import RequestReader
from warden.edge.request import HttpRequest
from warden.errors import HeadersTooLarge, InvalidRequest, WardenError
from warden.upstream.batch import CLOSE

monotonic: Final = time.monotonic  # (compiled: no attribute look-up per call)

if TYPE_CHECKING:
    from warden.edge.server import HttpServer

log = logging.getLogger("warden.edge")

# Pipelined requests beyond this many pause reading from the client.
_MAX_QUEUED_REQUESTS = 16


class HttpConnection(RequestReader):
    """An asyncio protocol (by its methods, not by inheritance: compiled, a class with a
    Python base class would crash when weakly referenced; see `warden.compiled`)."""

    __deletable__ = ["_parser"]  # (for mypyc: `connection_lost` deletes it)

    def __init__(self, server: HttpServer):
        super().__init__(server.limits, server.bodies, server.names)
        self._server = server
        self._loop = server.loop
        self._writes = server.writes  # every write, close and write_eof goes through it
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.closed = False
        self.watcher: ClientWatcher | None = None
        self.writing_paused = False   # (told once, when its buffer fills: a later watcher asks)
        self.proven_key: object | None = None   # (the auth stage's: tenancy.keys.ProvenKey)
        # Keep-alive idleness, judged by the server's once-a-second sweep (no clock reads
        # per request): responses finished so far, and when a sweep last saw activity.
        self.responses = 0
        self.quiet_since = self._loop.time()
        self._responses_at_sweep = 0
        self.current: HttpRequest | None = None
        self._reading_paused = False
        self._eof = False           # the client half-closed: close once it is answered
        # Per-response state. The head is held back until the first body bytes (or a flush),
        # so a small response leaves in one send.
        self._keep_alive = True
        # The client's HTTP version, read from its first request (1.0 clients get no chunked).
        self.http11: bool | None = None
        self._chunked = False
        self._held_head = b""
        self._response_started = False

    # -- the asyncio protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        # TCP_NODELAY is on already: uvloop (and asyncio) set it on every TCP transport, so
        # no first token waits for Nagle's 40 ms (tested: test_streaming checks both sides).
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self._server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # an error was answered: what still comes is discarded
        self._read_size = len(data)
        if self._in_head:
            self._head_read += self._read_size
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as e:
            # A callback raised: a WardenError is a refusal (413 ...), anything else a bug.
            error = e.__context__
            if not isinstance(error, WardenError):
                log.exception("request parsing failed")
                error = WardenError("internal error while reading the request")
            self._reject(error)
        except httptools.HttpParserUpgrade:
            self._reject(InvalidRequest("protocol upgrades are not supported"))
        except httptools.HttpParserError:
            self._reject(InvalidRequest("malformed HTTP request"))
        else:
            # A complete head is measured as parsed (`on_headers_complete`); one still
            # coming (the parser buffers it) by the bytes read so far.
            if self._in_head and self._head_read > self._max_header_bytes:
                self._reject(HeadersTooLarge("request headers are too large"))

    def eof_received(self) -> bool:
        """A client may half-close after its requests (shutdown(SHUT_WR)) and still read the
        answers: those it sent whole are answered, then the connection is closed (True keeps
        the sending side open meanwhile). TCP cannot tell that from a client that closed
        entirely until something is written: a stream whose client is gone ends at its next
        writes. Idle, in the middle of a request, or lingering: close now."""
        if (self._lingering and self._refusal is None) or \
                (self.current is None and not self._queue):
            return False
        self._eof = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._release_all()
        # The parser holds this connection's callbacks, so the two are a reference cycle:
        # dropped here, a closed connection is freed at once instead of by the cyclic
        # garbage collector (a collection per few hundred connections, ~4% of a streaming
        # benchmark's CPU). Nothing parses after connection_lost.
        del self._parser
        self._server.connections.discard(self)
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.on_client_lost()

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self.watcher is not None:
            self.watcher.on_client_pause()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.watcher is not None:
            self.watcher.on_client_resume()
        elif self.current is None and self._queue:  # (held while it did not read)
            self._loop.call_soon(self._dispatch_queued)

    # -- httptools callbacks (the others: `RequestReader`) --------------------------------

    def on_message_complete(self) -> None:
        parts = self._body
        if self._small:  # (small pieces, gathered: `on_body`)
            parts.append(bytes(self._small))
            self._small = bytearray()
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        # The request holds len(body) in the budget now (the parser made it what was reserved),
        # until its answer ends.
        self._reserved = 0
        parser = self._parser
        if self.http11 is None:  # once per connection: get_http_version() formats a string
            self.http11 = parser.get_http_version() == "1.1"
        request = HttpRequest(parser.get_method(), self._url, self._fields, self._passed, body,
                              parser.should_keep_alive(), self.client_ip, monotonic())
        self._url = b""
        self._fields = {}
        self._passed = []
        self._in_head = True
        self._head_read = 0
        self._merged = 0
        self._body = []
        self._body_size = 0
        self._trailer_bytes = 0
        self._expect_continue = False
        if self.current is not None or self.writing_paused:
            # (While its client reads no answers it is served no more: they would pile up
            # in memory. `resume_writing` goes on.)
            self._queue.append(request)
            if (len(self._queue) >= _MAX_QUEUED_REQUESTS or self.writing_paused) \
                    and self.transport:
                self.transport.pause_reading()
                self._reading_paused = True
        else:
            self._dispatch(request)

    # -- serving ---------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Answering a request, or holding some (its client reads slowly): not idle."""
        return self.current is not None or bool(self._queue)

    def _dispatch(self, request: HttpRequest) -> None:
        self.current = request
        self._keep_alive = request.keep_alive
        self._response_started = False
        try:
            pending = self._server.handler(request, self)
        except Exception:
            self._handler_failed(request)
            return
        if pending is not None:
            self._loop.create_task(self._finish_async(request, pending))

    async def _finish_async(self, request: HttpRequest, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            self._handler_failed(request)
            return
        if self.current is request:
            self.abort()  # the handler returned without answering: nothing more will come

    def _handler_failed(self, request: HttpRequest) -> None:
        log.exception("handler failed for %s %s", request.method, request.path)
        if self.current is not request:
            return
        if self._response_started:
            self.abort()  # a half-written response cannot be completed honestly
        else:
            self.respond(500, self._json_head(request.fields.get(b"x-request-id")),
                         WardenError("internal error").envelope())

    def _response_complete(self) -> None:
        request = self.current
        self.current = None
        self.watcher = None
        if self.closed or self.transport is None:
            return  # (what it held was released with the connection)
        if request is not None:
            self._bodies.held -= len(request.body)
        if not self._keep_alive or (self._eof and not self._queue and self._refusal is None):
            self._writes.add(self.transport, CLOSE)  # after the response's last bytes
            return
        self.responses += 1
        if self._queue:
            if self.writing_paused:  # (see `on_message_complete`)
                self.transport.pause_reading()
                self._reading_paused = True
                return
            # Not re-entrant: the next request starts from the loop, not from this call stack.
            self._loop.call_soon(self._dispatch_queued)
        elif self._refusal is not None:   # every request read before it is answered
            refusal, self._refusal = self._refusal, None
            self._answer_refusal(refusal)

    def abort(self) -> None:
        request = self.current
        if request is not None and not self.closed:  # its answer will not end: give it back
            self._bodies.held -= len(request.body)
        super().abort()

    def _release_all(self) -> None:
        """At the connection's loss, give back what its bodies hold in the budget: the one
        being read, the one being answered, those waiting. Once: past it, nothing is read,
        and an answer that ends releases nothing (`_response_complete`)."""
        held = self._reserved
        if self.current is not None:
            held += len(self.current.body)
        for request in self._queue:
            held += len(request.body)
        self._bodies.held -= held
        self._reserved = 0

    def _dispatch_queued(self) -> None:
        if self.current is not None or not self._queue or self.closed:
            return
        self._dispatch(self._queue.popleft())
        if self._reading_paused and len(self._queue) < _MAX_QUEUED_REQUESTS and self.transport:
            self._reading_paused = False
            self.transport.resume_reading()
