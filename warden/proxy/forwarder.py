"""Forward one request: choose a backend, send the request exactly once, relay the answer.

Retry rule: a request moves to another backend only on `NotSentError` (refused or timed-out
connect, no free connection): nothing reached an engine. Once any byte is written it is never
sent again — a request in flight on a dying backend may be what killed it, and replaying it
would kill the next one too.

Shape: a callback state machine, not a coroutine per request. With an idle keep-alive
connection the request is written synchronously from the client's read callback; a task runs
only while a new upstream connection is being opened. Every relay ends in `relay_ended` (or
`_fail` before it was sent), and each ends in `_done` exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from warden.config.schema import Settings
from warden.edge.responses import respond_error
from warden.errors import (
    Aborted,
    ConnectFailed,
    ModelNotFound,
    NoBackendAvailable,
    NotSentError,
    UpstreamError,
    UpstreamTimeout,
    WardenError,
)
from warden.exchange import Listeners, tell_ended, tell_started
from warden.fleet.backend import Backend
from warden.fleet.recent import LARGE_BODY, trim_to_bytes
from warden.fleet.registry import BackendRegistry
from warden.proxy import headers as hdr
from warden.proxy.relay import Relay
from warden.routing.filters import choose_backend
from warden.routing.protocol import RoutingPolicy
from warden.stream.observer import Ending, StreamObserver, Verdict, stream_verdict
from warden.upstream.batch import WriteBatch
from warden.upstream.connection import UpstreamConnection

monotonic: Final = time.monotonic  # (compiled: no attribute look-up per call)

# The status recorded (metrics, flight record) for a client that left before the response
# began: nginx's 499 "client closed request". Never sent: nobody is left to read it.
CLIENT_CLOSED_REQUEST: Final = 499


class Forwarder:
    def __init__(self, settings: Settings, backends: BackendRegistry, policy: RoutingPolicy,
                 listeners: Listeners, capture: int, active: set[Relay] | None = None, *,
                 on_retry: Callable[[str], None] | None = None,
                 on_connect_failed: Callable[[str, float], None] | None = None,
                 on_probe_end: Callable[[Relay], None] | None = None):
        """`listeners`: told of each exchange's start and end (warden.exchange); `capture`:
        what of each response a relay keeps for them (a `Capture`); `active`: the set of
        relays in flight (shared with whoever lists them); `on_retry(backend)`: a request
        moves on after `backend` was not reached; `on_connect_failed(backend, now)`: a
        connection to it was refused; `on_probe_end(relay)`: a quarantine probe's exchange
        ended."""
        self._backends = backends
        self._starters = listeners.starters
        self._enders = listeners.enders
        self._on_retry = on_retry
        self._on_connect_failed = on_connect_failed
        self._on_probe_end = on_probe_end
        self.policy = policy
        self.capture = capture
        self.timeouts = settings.timeouts
        self._cooldown = settings.discovery.unreachable_cooldown
        # Whether clients are shown which backend answered, in headers and error messages
        # (the records always say).
        self.expose_upstream = settings.expose_upstream
        # Error texts that show the server's insides are withheld from clients (scrub).
        self.scrub_errors = settings.scrub_upstream_errors
        self.active: set[Relay] = active if active is not None else set()
        self.connecting: set[asyncio.Task[None]] = set()  # waiting for a connection
        # Bound at start: asyncio.get_running_loop() costs a syscall per call on CPython 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None
        # Requests go upstream, and (through the server, which shares it) responses to the
        # clients, at the end of the loop's turn, together (see upstream.batch).
        self.writes = WriteBatch(in_flight=self.active)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.writes.bind(loop)

    def use(self, settings: Settings, backends: BackendRegistry, policy: RoutingPolicy) -> None:
        """A reloaded config: new requests go to these backends by this policy. Requests in
        flight carry on where they are (their relay holds its backend); the new timeouts
        apply to them from the next tick."""
        self._backends = backends
        self.policy = policy
        self.timeouts = settings.timeouts
        self._cooldown = settings.discovery.unreachable_cooldown
        self.expose_upstream = settings.expose_upstream
        self.scrub_errors = settings.scrub_upstream_errors

    def forward(self, relay: Relay, last_error: NotSentError | None = None) -> None:
        """Forward an admitted request (its `model` set), or try again after `last_error`
        (nothing was sent). The client always gets an answer."""
        serving = self._backends.serving.get(relay.model or "")  # (set: it was admitted)
        if not serving:
            self._fail(relay, self._unserved(relay.model))
            return
        now = monotonic()
        tried = relay.attempts
        first = serving[0]
        if len(serving) == 1 and not tried and first.clear and relay.only is None \
                and first.in_flight < first.max_in_flight:
            backend: Backend | None = first  # the common case: a one-backend model, at once
        else:
            backend = choose_backend(serving, tried, relay.only, relay, self.policy, now)
        if backend is None:
            message = f"no backend for model `{relay.model}` can take the request"
            detail = f" (last error: {last_error.message})" if last_error else ""
            # (The detail names the backend's address: shown only when exposed.)
            self._fail(relay, NoBackendAvailable(message + detail),
                       None if self.expose_upstream else message)
            return
        relay.attempts = (*tried, backend.name)
        if not backend.clear:  # half-open: this request is one of its few probes
            relay.probe = backend.sent()
        conn = backend.pool.try_acquire(now)
        if conn is not None:
            self._send(relay, backend, conn, now)
            return
        assert self._loop is not None, "Forwarder.bind(loop) was not called"
        # Counted from its choice, not only once sent: a burst that waits on connections
        # spreads over the fleet, and `max_in_flight` holds (`_connect` hands it on).
        backend.in_flight += 1
        task = self._loop.create_task(self._connect(relay, backend))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    def _unserved(self, model: str | None) -> WardenError:
        """No backend is known to serve `model`. A 404 (a typo, say) only once every
        backend's models are known: while one's are not (its `models` not configured, and it
        has not answered /v1/models since the start), the model may be its, so 503."""
        unknown = sum(1 for backend in self._backends if not backend.models)
        if unknown:
            return NoBackendAvailable(
                f"no backend can take a request for model `{model}` now: the models of "
                f"{unknown} of {len(self._backends)} backends are not known yet (they have "
                "not answered since the gateway started)")
        return ModelNotFound(f"The model `{model}` does not exist.", param="model")

    async def _connect(self, relay: Relay, backend: Backend) -> None:
        try:
            conn = await backend.pool.acquire()
        except NotSentError as e:
            backend.in_flight -= 1
            now = monotonic()
            if isinstance(e, ConnectFailed):
                backend.failed(now, relay.probe, e.message)
                backend.mark_unreachable(now, self._cooldown, e.message)
                if self._on_connect_failed is not None:
                    self._on_connect_failed(backend.name, now)
            elif relay.probe:
                backend.probe_abandoned(relay.probe)
            relay.probe = 0
            if self._on_retry is not None:
                self._on_retry(backend.name)
            self.forward(relay, e)
            return
        except asyncio.CancelledError:
            backend.in_flight -= 1
            if relay.probe:
                backend.probe_abandoned(relay.probe)
            relay.verdict = Verdict.CANCELLED
            relay.client.abort()
            self._done(relay, monotonic())
            raise
        backend.in_flight -= 1   # (`_send` counts it as every request)
        self._send(relay, backend, conn, monotonic())

    def _send(self, relay: Relay, backend: Backend, conn: UpstreamConnection,
              now: float) -> None:
        request = relay.request
        assert request is not None  # (a relay's always is)
        body = request.body if relay.forwarded_body is None else relay.forwarded_body
        # In-flight accounting: +1 here, -1 in `relay_ended`, which the relay calls exactly
        # once whatever ends it (response, backend loss, client loss, timeout, shutdown).
        self.active.add(relay)
        backend.in_flight += 1
        backend.requests_sent += 1
        # (the recorder's start: write-ahead, before a byte goes; the tracer's, which may set
        # `traceparent`)
        tell_started(self._starters, relay)
        data = hdr.upstream_request(request.method_bytes, request.target, request.fields,
                                    request.passed, body, backend.target,
                                    relay.upstream_id or relay.request_id, request.client_ip,
                                    relay.traceparent)
        recent = backend.recent
        if recent is not None:  # the incident detector's suspects
            recent.append(relay)
            if len(body) >= LARGE_BODY:  # (bytes bounded where they come from: see there)
                trim_to_bytes(recent)
        relay.send(backend, conn, data, now)

    def relay_ended(self, relay: Relay, ending: str) -> None:
        now = monotonic()
        if ending == Ending.CLIENT_LOST and not relay.status:
            relay.status = CLIENT_CLOSED_REQUEST  # left before the answer's head: nginx's 499
        self.active.discard(relay)
        backend = relay.sent_to
        backend.in_flight -= 1
        backend.pool.release(relay.conn, now)
        observer = relay.observer
        if observer is not None:
            _record_stream(relay, observer, ending)
        elif ending == Ending.UPSTREAM_COMPLETE:
            relay.verdict = Verdict.COMPLETE
        else:
            relay.verdict = stream_verdict(ending, done=False, error=False)
        # The backend's side of it (breaker, passive ejection): a 5xx, a dropped or cut
        # response, a timeout count against it; a client leaving counts for nothing; any
        # other answer (4xx included) is a success.
        if relay.status >= 500 or ending == Ending.UPSTREAM_LOST or ending == Ending.TIMED_OUT:
            backend.failed(now, relay.probe, relay.lost_reason or f"answered {relay.status}")
        elif ending == Ending.CLIENT_LOST or ending == Ending.CANCELLED:
            if relay.probe:
                backend.probe_abandoned(relay.probe)
        elif not backend.clear or relay.probe or backend.failing:
            backend.succeeded(now, relay.probe)
        if relay.head_sent or ending == Ending.CLIENT_LOST or (
                ending == Ending.CANCELLED and relay.lost_reason is None):
            if relay.lost_reason is not None:
                relay.error = relay.lost_reason
            self._done(relay, now)
            return
        if ending == Ending.CANCELLED:  # an operator's abort before the answer began
            self._fail(relay, Aborted(relay.lost_reason or "aborted"))
            return
        message = f"backend {backend.name}: {relay.lost_reason}"
        self._fail(relay, UpstreamTimeout(message) if ending == Ending.TIMED_OUT
                   else UpstreamError(message),
                   None if self.expose_upstream else relay.lost_reason or "the backend failed")

    def _fail(self, relay: Relay, error: WardenError, shown: str | None = None) -> None:
        """Answer `error`; the client reads `shown` instead of its message when given (one
        that does not name the backend), the record always the message."""
        relay.status = error.status
        relay.error = error.message
        if shown is not None:
            error = type(error)(shown, param=error.param, code=error.code)
        respond_error(relay.client, error, relay.request_id, relay.response_headers)
        self._done(relay, monotonic())

    def probe_unsent(self, relay: Relay) -> None:
        """A probe refused before it was sent (its client left): its slot is given back."""
        if relay.quarantine_probe is not None and self._on_probe_end is not None:
            self._on_probe_end(relay)

    def _done(self, relay: Relay, now: float) -> None:
        relay.ended_at = now
        if not relay.sent_at:  # never forwarded: its start goes with its end
            tell_started(self._starters, relay)
        tell_ended(self._enders, relay)
        if relay.quarantine_probe is not None and self._on_probe_end is not None:
            self._on_probe_end(relay)  # (before `captured` goes: it reads the death signs)
        if relay.captured is not None:
            # The response kept for the record (and the death signals, read before this) is
            # not needed past here; the relay may live on among its backend's suspects.
            relay.captured = None

    # -- background ------------------------------------------------------------------------

    def tick_interval(self) -> float:
        """Timeouts fire within one tick of their deadline."""
        shortest = min(self.timeouts.first_byte, self.timeouts.idle)
        return min(max(shortest / 10, 0.01), 0.5)

    async def run_timeouts(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval())
            now = monotonic()
            for relay in list(self.active):
                relay.check_timeout(now)

    def cancel_all(self) -> None:
        for task in list(self.connecting):
            task.cancel()
        for relay in list(self.active):
            relay.cancel()


def _record_stream(relay: Relay, observer: StreamObserver, ending: str) -> None:
    relay.verdict = observer.verdict(ending)
    if observer.first_event_at is not None:
        relay.ttft = observer.first_event_at - relay.received_at
    relay.usage = observer.usage
    relay.events = observer.events
    relay.finish_reasons = observer.finish_reasons
    if observer.error is not None:
        relay.error = str(observer.error.get("message", observer.error))
