"""Admission: a proxied request is parsed, passes the chain's stages in order, and is handed
to the forwarder; or it is refused, answered in the OpenAI envelope and ended through the
listeners like every other exchange (a refused request is evidence too).

Synchronous on purpose: with no stage waiting on I/O, the request is admitted, routed and
(usually) written upstream from the client's read callback, with no task per request.

A stage that raises (a bug: the contract is to return) refuses the request with a 500, logged,
and the exchange ends as a refused one does: what the stages before it reserved (a limits
ticket) is settled, not held for good.
"""

from __future__ import annotations

import logging
import time
from asyncio import Future
from collections.abc import Sequence
from functools import partial
from typing import Final

from warden.admission.auth import AuthStage
from warden.admission.cors import Cors
from warden.admission.parse import parse_request
from warden.admission.stage import NativeStage, Stage, StageAdapter, StageResult, native
from warden.edge.connection import HttpConnection
from warden.edge.contracts import ClientStream
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.errors import ClientGone, WardenError
from warden.exchange import Exchange, Listeners, RequestIds
from warden.fleet.registry import BackendRegistry
from warden.proxy.forwarder import Forwarder
from warden.proxy.relay import Relay

monotonic: Final = time.monotonic  # (compiled: no attribute look-up per call)

log = logging.getLogger("warden.admission")


# A body longer than this waits for its key before it is parsed (AuthStage.vouches).
DOOR_BODY: Final = 64 * 1024

class Admission:
    def __init__(self, stages: Sequence[Stage], forwarder: Forwarder,
                 backends: BackendRegistry, listeners: Listeners, ids: RequestIds,
                 cors: Cors | None = None):
        """`stages`: in order (admission.stage); `backends`: the running config's (a request
        without a `model` goes to a one-model fleet's); `ids`: the process's request ids;
        `cors`: the lines every answer to an allowed browser origin carries."""
        self._cors = cors
        self._stages = tuple(native(stage) for stage in stages)
        # Keys required: a body over DOOR_BODY is parsed only once its key is known.
        self._door = next((s for s in stages if isinstance(s, AuthStage)), None)
        self._forwarder = forwarder
        self._backends = backends
        self._listeners = listeners
        self._ids = ids

    def handle(self, request: HttpRequest, client: HttpConnection) -> None:
        client_id = request.fields.get(b"x-request-id")
        request_id = self._ids.pick(client_id)
        cors = self._cors.lines(request) if self._cors is not None else b""
        model: str | None
        body: dict
        if self._door is not None and len(request.body) > DOOR_BODY \
                and not self._door.vouches(request, client):
            # Not parsed: the stages refuse it as they would have (the address limit
            # counting it first, then the keys' 401), from its head alone.
            model, stream, body = None, False, {}
        else:
            try:
                model, stream, body = parse_request(request, self._backends)
            except WardenError as e:
                self.refuse(request, client, request_id, e, extra=cors)
                return
        relay = Relay(request, client, request_id, self._forwarder)
        if cors:
            relay.response_headers = cors
        if request_id is client_id:  # (see RequestIds: never the client's id upstream)
            relay.upstream_id = self._ids.upstream(request_id)
        relay.model = model
        relay.stream = stream
        stages = self._stages
        for index in range(len(stages)):  # (`_run`'s loop, inlined: a call fewer a request)
            try:
                result = stages[index].admit(relay, body)
            except Exception:
                result = _failed(stages[index])
            if result is not None:
                self._stopped(relay, body, index, result)
                return
        self._forwarder.forward(relay)

    def _run(self, relay: Relay, body: dict, first: int) -> None:
        """The stages from `first` on, then the forwarder."""
        stages = self._stages
        for index in range(first, len(stages)):
            try:
                result = stages[index].admit(relay, body)
            except Exception:
                result = _failed(stages[index])
            if result is not None:
                self._stopped(relay, body, index, result)
                return
        self._forwarder.forward(relay)

    def _stopped(self, relay: Relay, body: dict, index: int, result: StageResult) -> None:
        """Stage `index` did not let the request straight on: refuse it, or wait."""
        if isinstance(result, WardenError):
            self._refuse_relay(relay, result)
        elif result is not None:
            result.add_done_callback(partial(self._resumed, relay, body, index + 1))

    def _resumed(self, relay: Relay, body: dict, following: int,
                 done: Future[WardenError | None]) -> None:
        """A stage's future resolved. One that broke its contract (cancelled, or failed)
        still gets the client an answer; a client that left meanwhile is not forwarded."""
        if done.cancelled() or done.exception() is not None:
            error: WardenError | None = WardenError(
                "the gateway could not finish admitting the request")
            log.error("admission: a stage's wait ended without a verdict (%s)",
                      "cancelled" if done.cancelled() else repr(done.exception()))
        else:
            error = done.result()
            if error is None and relay.client.closed:
                error = ClientGone("the client left while its request was being admitted")
        if error is not None:
            self._refuse_relay(relay, error)
        else:
            self._run(relay, body, following)

    def _refuse_relay(self, relay: Relay, error: WardenError) -> None:
        request = relay.request
        assert request is not None
        self._forwarder.probe_unsent(relay)   # (a quarantine probe chosen, then refused)
        self.refuse(request, relay.client, relay.request_id, error, relay)

    def refuse(self, request: HttpRequest, client: ClientStream, request_id: bytes,
               error: WardenError, admitted: Exchange | None = None,
               extra: bytes = b"") -> None:
        """Answer `error` and end the request's exchange (its record: what was asked, the
        status, the error; from `admitted`, what the stages learnt: who asked, the guard's
        notes)."""
        exchange = Exchange(request_id, request.path, request.client_ip, request.received_at)
        exchange.request = request
        if admitted is not None:
            exchange.guard_notes = admitted.guard_notes
            exchange.principal = admitted.principal
            exchange.tenant = admitted.tenant
            exchange.model = admitted.model  # (the metrics count refusals by model)
            exchange.stream = admitted.stream
            # (what the limits reserved is settled at its end: it used nothing)
            exchange.limits_ticket = admitted.limits_ticket
            extra = admitted.response_headers
        exchange.status = error.status
        exchange.error = error.message
        respond_error(client, error, request_id, extra)
        exchange.ended_at = monotonic()
        self._listeners.ended(exchange)


def _failed(stage: NativeStage) -> WardenError:
    named = stage.stage if isinstance(stage, StageAdapter) else stage
    log.exception("admission: a stage raised (%s); the request is refused",
                  type(named).__name__)
    return WardenError("the gateway could not finish admitting the request")
