"""Keep-alive connections to one backend.

Rules: a connection is reused only after a complete response that allowed keep-alive; idle
connections older than the keep-alive timeout are discarded (the backend may close them any
moment); a request waits at most `pool_timeout` for a free connection. Every failure here
happens before the request is written, so it raises `NotSentError` (safe to retry elsewhere).

Hot-path note: nothing here calls `asyncio.get_running_loop()` on the reuse path (on CPython
3.11 it costs a getpid() syscall); times are `time.monotonic()`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Final

from warden.errors import ConnectFailed, PoolExhausted
from warden.upstream.connection import UpstreamConnection

monotonic: Final = time.monotonic  # (compiled: no attribute look-up per call)


class ConnectionPool:
    def __init__(self, host: str, port: int, *, max_connections: int, connect_timeout: float,
                 pool_timeout: float, keepalive_timeout: float,
                 tls: ssl.SSLContext | None = None):
        """`tls`: connect with TLS (an https:// backend; upstream.tls)."""
        self.host = host
        self.port = port
        self.reconfigure(max_connections=max_connections, connect_timeout=connect_timeout,
                         pool_timeout=pool_timeout, keepalive_timeout=keepalive_timeout,
                         tls=tls)
        self._idle: deque[UpstreamConnection] = deque()
        self._waiters: deque[asyncio.Future[UpstreamConnection | None]] = deque()
        self.open_count = 0
        self.retired = False  # its backend left the config: connections end with their use

    def reconfigure(self, *, max_connections: int, connect_timeout: float,
                    pool_timeout: float, keepalive_timeout: float,
                    tls: ssl.SSLContext | None = None) -> None:
        """New limits (a config reload); connections open now are kept."""
        self.tls = tls
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.keepalive_timeout = keepalive_timeout

    def retire(self) -> None:
        """Its backend was removed: close the idle connections now, and each busy one when
        its request ends (requests in flight finish)."""
        self.retired = True
        self.close()

    def try_acquire(self, now: float) -> UpstreamConnection | None:
        """An idle keep-alive connection at once, or None (then `acquire` must wait).
        `now` is `time.monotonic()`."""
        while self._idle:
            conn = self._idle.pop()  # most recently used first: warmest, least likely stale
            if conn.closed or now - conn.idle_since > self.keepalive_timeout:
                self.discard(conn)
                continue
            return conn
        return None

    async def acquire(self) -> UpstreamConnection:
        conn = self.try_acquire(monotonic())
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        if self.open_count < self.max_connections:
            return await self._connect(loop)
        return await self._wait_for_free(loop)

    def release(self, conn: UpstreamConnection, now: float | None = None) -> None:
        """Take back a connection, exactly once per `acquire`: kept for reuse if its last
        response completed cleanly with keep-alive, closed otherwise. `now` is
        `time.monotonic()` if the caller has it."""
        if not conn.reusable or self.retired:  # (a closed connection is never reusable)
            self.discard(conn)
            return
        if conn.reading_paused:   # (paused by its last client's back-pressure: idle, it must
            conn.resume_reading()  # see the backend close it; reused, read the answer)
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = monotonic() if now is None else now
        self._idle.append(conn)

    def discard(self, conn: UpstreamConnection) -> None:
        """Forget a connection that will not be reused (closing it if still open)."""
        conn.close()
        self.open_count -= 1
        self._slot_freed()

    def _slot_freed(self) -> None:
        """A slot opened up: let one waiter connect afresh. The slot is its from now (counted
        open): an `acquire` between this and the waiter's wake would otherwise take it too,
        and the pool open more than `max_connections`."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.open_count += 1
                waiter.set_result(None)
                return

    def close(self) -> None:
        while self._idle:
            self.discard(self._idle.popleft())

    async def _connect(self, loop: asyncio.AbstractEventLoop,
                       reserved: bool = False) -> UpstreamConnection:
        """A new connection, in a slot counted now (or already: `reserved`)."""
        if not reserved:
            self.open_count += 1
        try:
            async with asyncio.timeout(self.connect_timeout):  # (see fetch: not wait_for)
                _, conn = await loop.create_connection(  # type: ignore[type-var]
                    UpstreamConnection, self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None)
        except TimeoutError:
            self.open_count -= 1
            raise ConnectFailed(f"connect to {self.host}:{self.port} timed out") from None
        except ssl.SSLError as e:  # (before OSError: it is one) the handshake failed
            self.open_count -= 1
            raise ConnectFailed(f"TLS with {self.host}:{self.port} failed "
                                f"({e.reason or e})") from None
        except OSError as e:
            self.open_count -= 1
            raise ConnectFailed(f"cannot connect to {self.host}:{self.port} "
                               f"({e.strerror or e.__class__.__name__})") from None
        except BaseException:
            self.open_count -= 1
            raise
        return conn

    async def _wait_for_free(self, loop: asyncio.AbstractEventLoop) -> UpstreamConnection:
        waiter: asyncio.Future[UpstreamConnection | None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.pool_timeout):
                conn = await waiter
        except TimeoutError:
            self._pass_on(waiter)   # (the timeout can fire after a hand-off, before the wake)
            raise PoolExhausted(f"no free connection to {self.host}:{self.port} within "
                               f"{self.pool_timeout:g}s") from None
        except asyncio.CancelledError:
            self._pass_on(waiter)
            raise
        if conn is None:  # (a slot, reserved for it)
            return await self._connect(loop, reserved=True)
        return conn

    def _pass_on(self, waiter: asyncio.Future[UpstreamConnection | None]) -> None:
        """A waiter that gives up: what it was handed, if anything, goes to the next (a
        connection, or the free slot its None meant); else it would be lost to the pool."""
        if not waiter.done() or waiter.cancelled():
            return
        handed = waiter.result()
        if handed is not None:
            self.release(handed)
        else:  # (the slot reserved for it)
            self.open_count -= 1
            self._slot_freed()
