"""Forward one request: choose a backend, send the request exactly once, relay the answer.

Retry rule: a request moves to another backend only on `NotSentError` (refused or timed-out
connect, no free connection): nothing reached an engine. Once any byte is written it is never
sent again — a request in flight on a dying backend may be what killed it, and replaying it
would kill the next one too.
"""

from __future__ import annotations

import asyncio

from warden.config.schema import Settings
from warden.edge.request import HttpRequest
from warden.edge.server import HttpConnection
from warden.errors import (
    ConnectFailed,
    ModelNotFound,
    NoBackendAvailable,
    NotSentError,
    UpstreamError,
    UpstreamTimeout,
)
from warden.fleet.backend import Backend
from warden.fleet.registry import BackendRegistry
from warden.observe.metrics import GatewayMetrics
from warden.proxy import headers as hdr
from warden.proxy.exchange import Exchange
from warden.proxy.relay import Relay
from warden.routing.policy import RoutingPolicy
from warden.stream.observer import Ending, stream_verdict


class Forwarder:
    def __init__(self, settings: Settings, backends: BackendRegistry, policy: RoutingPolicy,
                 metrics: GatewayMetrics):
        self._backends = backends
        self._policy = policy
        self._metrics = metrics
        self._timeouts = settings.timeouts
        self._cooldown = settings.discovery.unreachable_cooldown

    async def forward(self, client: HttpConnection, request: HttpRequest,
                      exchange: Exchange) -> None:
        """Answer the client through a backend. Raises a `WardenError` only while nothing
        has been sent to the client yet."""
        assert exchange.model is not None
        serving = self._backends.serving(exchange.model)
        if not serving:
            raise ModelNotFound(f"The model `{exchange.model}` does not exist.", param="model")
        loop = asyncio.get_running_loop()
        tried: list[Backend] = []
        last_error: NotSentError | None = None
        while True:
            now = loop.time()
            candidates = [b for b in serving if b not in tried and b.available(now)]
            if not candidates:
                detail = f" (last error: {last_error.message})" if last_error else ""
                raise NoBackendAvailable(
                    f"no backend for model `{exchange.model}` can take the request{detail}")
            backend = self._policy.pick(candidates)
            tried.append(backend)
            exchange.attempts.append(backend.name)
            try:
                conn = await backend.pool.acquire()
            except NotSentError as e:
                if isinstance(e, ConnectFailed):
                    backend.mark_unreachable(loop.time(), self._cooldown, e.message)
                self._metrics.retried(backend.name)
                last_error = e
                continue
            await self._exchange(client, request, exchange, backend, conn)
            return

    async def _exchange(self, client: HttpConnection, request: HttpRequest,
                        exchange: Exchange, backend: Backend, conn) -> None:
        exchange.backend = backend.name
        relay = Relay(client, conn, request_id=exchange.request_id,
                      upstream_addr=backend.host_header,
                      first_byte_timeout=self._timeouts.first_byte,
                      idle_timeout=self._timeouts.idle)
        upstream_request = hdr.upstream_request(
            request.method.encode(), _target(request), request.headers, request.body,
            host=backend.host_header, request_id=exchange.request_id,
            client_ip=request.client_ip, api_key=backend.spec.api_key)
        backend.in_flight += 1
        backend.requests_sent += 1
        try:
            relay.start(upstream_request)
            await relay.done
        finally:
            backend.in_flight -= 1
            relay.cancel()  # no-op unless this task was cancelled mid-exchange
            backend.pool.release(conn)
        self._record(exchange, relay)
        if not relay.head_sent and relay.ending is not Ending.CLIENT_LOST:
            if relay.ending is Ending.TIMED_OUT:
                raise UpstreamTimeout(f"backend {backend.name}: {relay.lost_reason}")
            raise UpstreamError(f"backend {backend.name}: {relay.lost_reason}")

    @staticmethod
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
