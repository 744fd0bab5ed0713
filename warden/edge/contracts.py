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
    """Told what happens to the client while a response is under way."""

    def on_client_lost(self) -> None: ...
    def on_client_pause(self) -> None: ...   # the client's socket buffer is full
    def on_client_resume(self) -> None: ...


@dataclass(frozen=True)
class ServerLimits:
    max_body: int = 100 * 2**20
    max_header_bytes: int = 64 * 2**10
    keepalive_timeout: float = 75.0
