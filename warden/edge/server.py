"""The HTTP/1.1 server: the listening socket, its open connections, and a once-a-second sweep
(the Date line, idle keep-alive connections)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

from warden.edge import wire
from warden.edge.budget import BodyBudget
from warden.edge.connection import HttpConnection
from warden.edge.contracts import Handler, ServerLimits
from warden.edge.reading import FieldNames
from warden.upstream.batch import WriteBatch

__all__ = ["Handler", "HttpConnection", "HttpServer", "ServerLimits"]


class HttpServer:
    """Owns the listening socket, the open connections and the keep-alive sweeper."""

    def __init__(self, handler: Handler, limits: ServerLimits,
                 loop: asyncio.AbstractEventLoop | None = None,
                 writes: WriteBatch | None = None,
                 request_id: Callable[[bytes | None], bytes] | None = None):
        """`writes`: the batch every connection writes through (see upstream.batch); one of
        its own by default. `request_id(client's X-Request-Id or None)`: the id the server's
        own answers (a request it could not read, a handler that failed) carry, from the
        same sequence as the handler's (None: they carry none)."""
        self.request_id = request_id
        # The memory request bodies hold across all connections (its limit follows `limits`).
        self.bodies = BodyBudget(limits.max_body_buffer)
        self.names = FieldNames()   # the field names its clients send, lower-cased (bounded)
        # Both read afresh for each request (handler) and each new connection (limits): a
        # config reload replaces them.
        self.handler = handler
        self.limits = limits
        # Requests refused before they were read whole, by error code (413, 431, 503...).
        self.refused: dict[str, int] = {}
        self.loop = loop or asyncio.get_running_loop()
        self.writes = writes if writes is not None else WriteBatch()
        self.writes.bind(self.loop)
        self.connections: set[HttpConnection] = set()
        # Header lines of the config's (response_headers) that every answer carries; the
        # Date line carries them too, so the gateway's own answers cost nothing more.
        self.extra_lines = b""
        # Refreshed every second by `_sweep_idle`'s loop, read by every response.
        self.date_line = wire.date_line()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def add_to_answers(self, lines: bytes) -> None:
        """Header lines (each ending in CRLF) for every answer from now on."""
        self.extra_lines = lines
        self.date_line = wire.date_line() + lines

    @property
    def limits(self) -> ServerLimits:
        return self._limits

    @limits.setter
    def limits(self, limits: ServerLimits) -> None:
        self._limits = limits
        self.bodies.limit = limits.max_body_buffer  # (bodies held already stay held)

    async def start(self, host: str, port: int, *, reuse_port: bool = False,
                    tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve HTTPS with this context (edge.tls)."""
        self._server = await self.loop.create_server(  # (a protocol by its methods)
            lambda: HttpConnection(self), host, port,  # type: ignore[arg-type,return-value]
            backlog=4096, reuse_port=reuse_port, ssl=tls,
            ssl_handshake_timeout=10.0 if tls is not None else None)
        self._sweeper = self.loop.create_task(self._sweep_idle())

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def stop_listening(self) -> None:
        """Refuse new connections (open ones carry on)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.stop_listening()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.writes.flush()  # what this turn wrote leaves before the connections are cut
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _sweep_idle(self) -> None:
        """Every second: refresh the Date line; close connections that sat idle (no request
        in progress, no response finished) for `keepalive_timeout` seconds.

        Idleness is elapsed time since the sweep that last saw activity, so a connection is
        never closed before it has been idle for the whole timeout, however the sweeps are
        spaced (a sleep may end a hair early and the next sweep come right after it)."""
        while True:
            await asyncio.sleep(1.0 - time.time() % 1.0)
            self.date_line = wire.date_line() + self.extra_lines
            now = self.loop.time()
            timeout = self.limits.keepalive_timeout  # (a config reload may change it)
            for conn in list(self.connections):
                if conn.busy or conn.responses != conn._responses_at_sweep:
                    conn._responses_at_sweep = conn.responses
                    conn.quiet_since = now
                elif now - conn.quiet_since >= timeout and conn.transport is not None:
                    conn.transport.close()
