"""What the HTTP server promises its handlers and asks of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from warden.edge.connection import HttpConnection
    from warden.edge.request import HttpRequest

# A handler answers one request through the connection: either at once and returning None
# (the data path: no task per request), or as a coroutine (run as a task).
Handler = Callable[["HttpRequest", "HttpConnection"], Awaitable[None] | None]


class ClientWatcher(Protocol):
    """Told what happens to the client while a response is under way (a watcher set while
    the client is paused, `ClientStream.writing_paused`, is told nothing until it resumes)."""

    def on_client_lost(self) -> None: ...
    def on_client_pause(self) -> None: ...   # the client's socket buffer is full
    def on_client_resume(self) -> None: ...


class ClientStream(Protocol):
    """What an exchange may do with its client's connection (an `HttpConnection`): answer
    it, or relay a response to it piece by piece, and watch it meanwhile."""

    watcher: ClientWatcher | None
    closed: bool
    writing_paused: bool   # its socket's buffer is full (a new watcher starts paused)
    http11: bool | None    # None until the first request's version is known
    proven_key: object | None   # the auth stage's memo for the connection (tenancy.keys)

    def respond(self, status: int, headers: bytes, body: bytes) -> None: ...
    def start_response(self, status: int, headers: bytes, length: int | None = None) -> None: ...
    def start_raw(self, head: bytes) -> None: ...   # a head the backend framed: passed as is
    def write(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def end_response(self, data: bytes = b"") -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 100 * 2**20
    max_body_buffer: int = 256 * 2**20   # all request bodies in memory at once
    max_header_bytes: int = 64 * 2**10
    max_header_count: int = 100
    keepalive_timeout: float = 75.0
