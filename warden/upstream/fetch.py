"""A small whole-response request over a backend's pool, for the gateway's own calls
(discovery, health). Not for proxying: that streams through a relay."""

from __future__ import annotations

import asyncio

from warden.errors import UpstreamError, UpstreamTimeout
from warden.upstream.pool import ConnectionPool
from warden.upstream.sink import BodyMode


class _Collector:
    def __init__(self, future: asyncio.Future[tuple[int, bytes]]):
        self._future = future
        self._status = 0
        self._body: list[bytes] = []

    def on_head(self, status: int, head: bytes) -> int:
        self._status = status
        return BodyMode.DECODED  # the body arrives de-chunked through on_body

    def on_raw(self, data: bytes, last: bool) -> None:
        raise AssertionError("decoded mode")

    def observe_piece(self, piece: bytes) -> None:
        raise AssertionError("decoded mode")

    def on_body(self, chunk: bytes) -> None:
        self._body.append(chunk)

    def on_complete(self) -> None:
        if not self._future.done():
            self._future.set_result((self._status, b"".join(self._body)))

    def on_lost(self, reason: str) -> None:
        if not self._future.done():
            self._future.set_exception(UpstreamError(reason))

    def flush(self) -> None:
        pass


async def fetch(pool: ConnectionPool, method: str, path: str, host_header: bytes,
                timeout: float, body: bytes = b"", headers: bytes = b"") -> tuple[int, bytes]:
    """Returns (status, body). Raises NotSentError before sending, UpstreamError after.
    `body` goes as JSON; `headers` are extra header lines, each ending in CRLF."""
    conn = await pool.acquire()
    future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
    typed = b"content-type: application/json\r\n" if body else b""
    request = (f"{method} {path} HTTP/1.1\r\n".encode() + b"host: " + host_header + b"\r\n"
               + headers + typed + b"content-length: " + str(len(body)).encode()
               + b"\r\n\r\n" + body)
    conn.send([request], _Collector(future))
    try:
        # asyncio.timeout, never wait_for: on Python 3.11 wait_for swallows a cancellation
        # that arrives with the result, and a watch loop cancelled at shutdown then runs on.
        async with asyncio.timeout(timeout):
            return await future
    except TimeoutError:
        raise UpstreamTimeout(f"{method} {path} got no answer within {timeout:g}s") from None
    finally:
        pool.release(conn)
