"""The gateway's routes: OpenAI endpoints proxied by model, and the gateway's own endpoints.

Admission here is only what every request needs: a known path and method, a JSON body, a
model. Everything else is the forwarder's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine

import orjson

from warden.config.schema import RoutingSpec
from warden.edge.admin import BACKEND_ACTIONS, FleetAdmin, Reload
from warden.edge.admin_quarantine import QuarantineAdmin
from warden.edge.connection import HttpConnection
from warden.edge.own import OwnEndpoints
from warden.edge.refused import unknown_path
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.errors import (
    ClientGone,
    InvalidRequest,
    MethodNotAllowed,
    UnsupportedMediaType,
    WardenError,
)
from warden.exchange import Exchange, RequestIds
from warden.fleet.backend import Backend
from warden.fleet.registry import BackendRegistry
from warden.guard.guard import Guard, Outcome
from warden.guard.lax import lax_bool
from warden.observe.metrics import GatewayMetrics
from warden.proxy.forwarder import Forwarder
from warden.proxy.relay import Relay
from warden.record.recorder import Recorder
from warden.routing.affinity import prefix_key, session_key

# POST endpoints routed to a backend that serves the body's `model`.
PROXIED_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/tokenize", "/detokenize",
})

# The gateway's own routes get the request's id (every response carries an X-Request-Id).
LocalRoute = Callable[[HttpRequest, HttpConnection, bytes], None]
PostRoute = Callable[[HttpRequest, HttpConnection, bytes], Coroutine[None, None, None]]


class GatewayHandler:
    def __init__(self, forwarder: Forwarder, backends: BackendRegistry,
                 metrics: GatewayMetrics, recorder: Recorder | None = None,
                 guard: Guard | None = None, routing: RoutingSpec | None = None,
                 ids: RequestIds | None = None, reload: Reload | None = None):
        """`reload`: re-reads the config file (None: the gateway has none)."""
        self._forwarder = forwarder
        self._routing = routing if routing is not None else RoutingSpec()
        session = self._routing.session
        self._session_header = session.header.lower().encode() \
            if session is not None and session.header else None
        self._session_user = session is not None and session.user_field
        # Affinity keys cost a look at the body: only for a policy that uses them.
        self._wants_keys = forwarder.policy.wants_prefix or forwarder.policy.wants_session
        self._backends = backends
        self._metrics = metrics
        self._recorder = recorder
        self._guard = guard
        self._ids = ids if ids is not None else RequestIds()  # (one per process, not per reload)
        self._admin = FleetAdmin(forwarder, backends, reload,
                                 guard.models if guard is not None else None)
        self._quarantine_admin = QuarantineAdmin(guard.probation if guard is not None else None)
        own = OwnEndpoints(backends, metrics, self._quarantine_admin)
        self._local: dict[str, LocalRoute] = {
            "/v1/models": own.models,
            "/health": own.health,
            "/ready": own.ready,
            "/version": own.version,
            "/metrics": own.prometheus,
            "/admin/backends": self._admin.backends,
            "/admin/quarantine": self._quarantine_admin.listing,
        }
        self._local_post: dict[str, PostRoute] = {
            "/admin/quarantine/lift": self._quarantine_admin.lift,
            "/admin/reload": self._admin.reload,
        }

    def __call__(self, request: HttpRequest,
                 client: HttpConnection) -> Coroutine[None, None, None] | None:
        """Synchronous on purpose: the data path starts (and usually sends) the upstream
        request from the client's read callback, with no task per request."""
        path = request.path
        if path in PROXIED_PATHS:
            self._proxy(request, client)
            return None
        rid = self._ids.pick(request.fields.get(b"x-request-id"))
        route = self._local.get(path)
        if route is None and request.method == "POST":
            post = self._local_post.get(path)
            if post is not None:
                return post(request, client, rid)  # a coroutine: the connection awaits it
            if path.startswith(BACKEND_ACTIONS):
                self._admin.backend_action(request, client, rid)
                return None
        if route is None:
            respond_error(client, unknown_path(path), rid)
        elif request.method not in ("GET", "HEAD"):
            respond_error(client, MethodNotAllowed(
                f"{request.method} is not allowed on {path}"), rid)
        else:
            route(request, client, rid)
        return None

    # -- proxied endpoints -----------------------------------------------------------------

    def _proxy(self, request: HttpRequest, client: HttpConnection) -> None:
        fields = request.fields
        client_id = fields.get(b"x-request-id")
        request_id = self._ids.pick(client_id)
        try:
            model, stream, body = self._admit(request, fields.get(b"content-type", b""))
        except WardenError as e:
            self._reject(request, client, request_id, e)
            return
        relay = Relay(request, client, request_id, self._forwarder)
        if request_id is client_id:  # (see RequestIds: never the client's id upstream)
            relay.upstream_id = self._ids.upstream(request_id)
        relay.model = model
        relay.stream = stream
        guard = self._guard
        serving = self._backends.serving.get(model)
        if guard is not None and serving:  # an unknown model is the forwarder's 404
            outcome = guard.admit(request.path, model, body, request.body, serving)
            # (most requests: None)
            if outcome is not None and not self._follow(relay, client, body, serving, outcome):
                return
        self._forward(relay, body)

    def _follow(self, relay: Relay, client: HttpConnection, body: dict, serving: list[Backend],
                outcome: Outcome) -> bool:
        """Do what the guard decided; whether the request goes on now (else it was refused,
        or goes on later: parked for a probe, or its images being fetched)."""
        relay.guard_notes = [*(relay.guard_notes or ()), *outcome.notes]
        if outcome.rejection is not None:
            request = relay.request
            assert request is not None
            self._reject(request, client, relay.request_id, outcome.rejection, relay.guard_notes)
            return False
        if outcome.changed:
            relay.forwarded_body = orjson.dumps(body)
        if outcome.only is not None:
            relay.only = outcome.only if relay.only is None else relay.only & outcome.only
        relay.quarantine_probe = outcome.probe
        if outcome.fetch:
            self._fetch_media(relay, client, body, serving)
        elif outcome.wait:
            self._wait_for_probe(relay, client, body, serving)
        return not (outcome.fetch or outcome.wait)

    def _fetch_media(self, relay: Relay, client: HttpConnection, body: dict,
                     serving: list[Backend]) -> None:
        """Fetch the request's remote images and inline them (guard/media_fetch); the media
        rules then judge them, and it goes on, or is refused (a failed fetch: 400)."""
        guard = self._guard
        assert guard is not None and guard.fetcher is not None

        def fetched(error: WardenError | None) -> None:
            request = relay.request
            assert request is not None
            if error is None and client.closed:
                error = ClientGone("the client left while its images were fetched")
            if error is not None:
                self._reject(request, client, relay.request_id, error, relay.guard_notes)
                return
            relay.forwarded_body = orjson.dumps(body)
            outcome = guard.after_fetch(request.path, relay.model or "", body, serving)
            if outcome is None or self._follow(relay, client, body, serving, outcome):
                self._forward(relay, body)

        guard.fetcher.start(body, fetched)

    def _forward(self, relay: Relay, body: dict) -> None:
        if self._wants_keys:
            policy = self._forwarder.policy
            if policy.wants_prefix:
                relay.prefix_key = prefix_key(body, self._routing.prefix_chars)
            if policy.wants_session:
                request = relay.request
                assert request is not None
                relay.session_key = self._session_key(request, body)
        self._forwarder.forward(relay)

    def _wait_for_probe(self, relay: Relay, client: HttpConnection, body: dict,
                        serving: list[Backend], deadline: float | None = None) -> None:
        """Park a request whose quarantine entry is being probed (guard/probation); when the
        probe's outcome is known, its quarantine step runs again: it goes on, probes, waits
        again, or is refused."""
        guard = self._guard
        assert guard is not None and guard.probation is not None
        request = relay.request
        assert request is not None
        only = relay.only  # what the rules allowed, before the quarantine's step

        def resume() -> None:
            if client.closed:  # it left while it waited
                refuse(ClientGone("the client closed the connection while its request "
                                  "waited for a quarantine probe"))
                return
            outcome = Outcome()
            guard.quarantined(body, serving, outcome)
            relay.guard_notes = [*(relay.guard_notes or ()), *outcome.notes]
            if outcome.rejection is not None:
                refuse(outcome.rejection)
            elif outcome.wait:
                self._wait_for_probe(relay, client, body, serving, parked_until)
            else:
                relay.quarantine_probe = outcome.probe
                relay.only = outcome.only if only is None or outcome.only is None \
                    else only & outcome.only
                self._forward(relay, body)

        def refuse(error: WardenError) -> None:
            self._reject(request, client, relay.request_id, error, relay.guard_notes)

        parked_until = guard.probation.park(resume, refuse, deadline)

    def _session_key(self, request: HttpRequest, body: dict) -> int | None:
        """The session a request belongs to: the configured header's value, else the body's
        `user` (when configured)."""
        if self._session_header is not None:
            value = request.header(self._session_header)
            if value:
                return session_key(value)
        if self._session_user:
            user = body.get("user")
            if type(user) is str and user:
                return session_key(user)
        return None

    def _admit(self, request: HttpRequest, content_type: bytes) -> tuple[str, bool, dict]:
        """(model, stream, the parsed body) of an acceptable request; raises a
        `ClientError` otherwise."""
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}; "
                                   "use POST")
        if not content_type.lower().startswith(b"application/json"):
            raise UnsupportedMediaType("Content-Type must be application/json")
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            raise InvalidRequest("We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        model = body.get("model")
        if model is None:
            model = self._default_model()
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model must be a non-empty string", param="model")
        stream = body.get("stream")
        if stream is not True and stream is not None and stream is not False:
            stream = lax_bool(stream)  # vLLM streams "true", 1, "on" too (pydantic's lax mode)
        return model, stream is True, body

    def _default_model(self) -> str:
        """vLLM lets a request omit `model` when it serves one; so does a one-model fleet."""
        models = self._backends.models()
        if len(models) == 1:
            return next(iter(models))
        raise InvalidRequest("you must provide a model parameter", param="model")

    def _reject(self, request: HttpRequest, client: HttpConnection, request_id: bytes,
                error: WardenError, guard_notes: list[str] | None = None) -> None:
        exchange = Exchange(request_id, request.path, request.client_ip, request.received_at)
        exchange.request = request
        exchange.guard_notes = guard_notes
        exchange.status = error.status
        exchange.error = error.message
        respond_error(client, error, request_id)
        exchange.ended_at = time.monotonic()
        self._metrics.exchange_done(exchange)
        if self._recorder is not None:  # a refused request is evidence too
            self._recorder.started(exchange)
            self._recorder.ended(exchange)
