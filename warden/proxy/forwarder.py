"""Forward one request: choose a backend, send the request exactly once, relay the answer.

Retry rule: a request moves to another backend only on `NotSentError` (refused or timed-out
connect, no free connection): nothing reached an engine. Once any byte is written it is never
sent again — a request in flight on a dying backend may be what killed it, and replaying it
would kill the next one too.

Shape: a callback state machine, not a coroutine per request. With an idle keep-alive
connection the request is written synchronously from the client's read callback; a task runs
only while a new upstream connection is being opened. Every exchange ends in `_relay_ended`
or `_fail`, each of which calls `on_end` exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from warden.config.schema import Settings
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.edge.server import HttpConnection
from warden.errors import (
    ConnectFailed,
    ModelNotFound,
    NoBackendAvailable,
    NotSentError,
    UpstreamError,
    UpstreamTimeout,
    WardenError,
)
from warden.fleet.backend import Backend
from warden.fleet.registry import BackendRegistry
from warden.observe.metrics import GatewayMetrics
from warden.proxy import headers as hdr
from warden.proxy.exchange import Exchange
from warden.proxy.relay import Relay
from warden.routing.policy import RoutingPolicy
from warden.stream.observer import Ending, Verdict, stream_verdict

ExchangeDone = Callable[[Exchange], None]


class _Pending:
    """One request between admission and the end of its relay."""

    backend: Backend | None = None

    def __init__(self, client: HttpConnection, request: HttpRequest, exchange: Exchange,
                 serving: list[Backend], on_end: ExchangeDone):
        self.client = client
        self.request = request
        self.exchange = exchange
        self.serving = serving
        self.on_end = on_end


class Forwarder:
    def __init__(self, settings: Settings, backends: BackendRegistry, policy: RoutingPolicy,
                 metrics: GatewayMetrics):
        self._backends = backends
        self._policy = policy
        self._metrics = metrics
        self._timeouts = settings.timeouts
        self._cooldown = settings.discovery.unreachable_cooldown
        self.active: dict[Relay, _Pending] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        # Bound at start: asyncio.get_running_loop() costs a syscall per call on CPython 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def start(self, client: HttpConnection, request: HttpRequest, exchange: Exchange,
              on_end: ExchangeDone) -> None:
        assert exchange.model is not None
        serving = self._backends.serving(exchange.model)
        pending = _Pending(client, request, exchange, serving, on_end)
        if not serving:
            self._fail(pending, ModelNotFound(f"The model `{exchange.model}` does not exist.",
                                              param="model"))
            return
        self._attempt(pending, None)

    def _attempt(self, pending: _Pending, last_error: NotSentError | None) -> None:
        now = time.monotonic()
        tried = pending.exchange.attempts
        candidates = [b for b in pending.serving
                      if (b.reachable or now >= b.unreachable_until) and b.name not in tried]
        if not candidates:
            detail = f" (last error: {last_error.message})" if last_error else ""
            self._fail(pending, NoBackendAvailable(
                f"no backend for model `{pending.exchange.model}` can take the "
                f"request{detail}"))
            return
        backend = self._policy.pick(candidates)
        tried.append(backend.name)
        conn = backend.pool.try_acquire()
        if conn is not None:
            self._send(pending, backend, conn)
            return
        assert self._loop is not None, "Forwarder.bind(loop) was not called"
        task = self._loop.create_task(self._connect(pending, backend))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, pending: _Pending, backend: Backend) -> None:
        try:
            conn = await backend.pool.acquire()
        except NotSentError as e:
            if isinstance(e, ConnectFailed):
                backend.mark_unreachable(time.monotonic(), self._cooldown, e.message)
            self._metrics.retried(backend.name)
            self._attempt(pending, e)
            return
        except asyncio.CancelledError:
            pending.exchange.verdict = Verdict.CANCELLED
            pending.client.abort()
            pending.on_end(pending.exchange)
            raise
        self._send(pending, backend, conn)

    def _send(self, pending: _Pending, backend: Backend, conn) -> None:
        exchange = pending.exchange
        exchange.backend = backend.name
        pending.backend = backend
        relay = Relay(pending.client, conn, exchange.request_id, backend.target,
                      self._timeouts, self._relay_ended)
        request = pending.request
        upstream_request = hdr.upstream_request(
            request.method.encode(), _target(request), request.headers, request.body,
            backend.target, exchange.request_id, request.client_ip)
        # In-flight accounting: +1 here, -1 in `_relay_ended`, which the relay calls exactly
        # once whatever ends it (response, backend loss, client loss, timeout, shutdown).
        self.active[relay] = pending
        backend.in_flight += 1
        backend.requests_sent += 1
        relay.start(upstream_request)

    def _relay_ended(self, relay: Relay) -> None:
        pending = self.active.pop(relay)
        exchange = pending.exchange
        backend = pending.backend
        assert backend is not None
        backend.in_flight -= 1
        backend.pool.release(relay.conn)
        _record(exchange, relay)
        if relay.head_sent or relay.ending == Ending.CLIENT_LOST \
                or relay.ending == Ending.CANCELLED:
            pending.on_end(exchange)
            return
        message = f"backend {backend.name}: {relay.lost_reason}"
        error = UpstreamTimeout(message) if relay.ending == Ending.TIMED_OUT \
            else UpstreamError(message)
        self._fail(pending, error)

    def _fail(self, pending: _Pending, error: WardenError) -> None:
        exchange = pending.exchange
        exchange.status = error.status
        exchange.error = error.message
        respond_error(pending.client, error, exchange.request_id)
        pending.on_end(exchange)

    # -- background ------------------------------------------------------------------------

    def tick_interval(self) -> float:
        """Timeouts fire within one tick of their deadline."""
        shortest = min(self._timeouts.first_byte, self._timeouts.idle)
        return min(max(shortest / 10, 0.01), 0.5)

    async def run_timeouts(self) -> None:
        interval = self.tick_interval()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for relay in list(self.active):
                relay.check_timeout(now)

    def cancel_all(self) -> None:
        for task in list(self._connecting):
            task.cancel()
        for relay in list(self.active):
            relay.cancel()


def _record(exchange: Exchange, relay: Relay) -> None:
    assert relay.ending is not None
    exchange.status = relay.status
    observer = relay.observer
    if observer is None:
        exchange.verdict = stream_verdict(relay.ending, done=True, error=False)
    else:
        exchange.verdict = observer.verdict(relay.ending)
        if observer.first_event_at is not None:
            exchange.ttft = observer.first_event_at - exchange.received_at
        exchange.usage = observer.usage
        exchange.finish_reasons = observer.finish_reasons
        if observer.error is not None:
            exchange.error = str(observer.error.get("message", observer.error))
    if relay.lost_reason is not None:
        exchange.error = relay.lost_reason


def _target(request: HttpRequest) -> bytes:
    target = request.path.encode("latin-1")
    return target + b"?" + request.query.encode("latin-1") if request.query else target
