"""The admin API's fleet routes (admin.routes): the backends
as routed, drain or enable one, and reload the config file. Not on the data path (so not
compiled: warden/compiled.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from warden.config.schema import ModelFacts
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error, respond_json
from warden.errors import NotFound
from warden.fleet.deployment import describe as describe_deployment
from warden.fleet.model_facts import describe
from warden.fleet.registry import BackendRegistry
from warden.routing.protocol import RoutingPolicy

log = logging.getLogger("warden.admin")

# POST BACKEND_ACTIONS + "NAME/drain" | "NAME/enable"
BACKEND_ACTIONS = "/admin/backends/"

# Re-reads the config file (app.Gateway.reload_source): what it did, as a JSON object.
Reload = Callable[[str], Coroutine[Any, Any, dict]]


class FleetAdmin:
    def __init__(self, policy: RoutingPolicy, backends: BackendRegistry,
                 reload: Reload | None = None, models: dict[str, ModelFacts] | None = None):
        """`policy`, `backends`: the running config's; `reload`: None when the gateway has
        no config file to re-read (`warden demo`); `models`: the facts the guard's config
        sets by hand (`guard.models`)."""
        self._policy = policy
        self._backends = backends
        self._reload = reload
        self._models = models or {}

    def backends(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """GET /admin/backends: each backend's state and load (and score, for a scoring
        policy), the facts of each model it serves and its deployment facts, each with
        where it came from."""
        now = time.monotonic()
        policy = self._policy
        backends = []
        for backend in self._backends:
            snapshot = backend.snapshot(now)
            routing = policy.explain(backend, now)
            if routing is not None:
                snapshot["routing"] = routing
            snapshot["facts"] = {model: describe(model, self._models.get(model), backend)
                                 for model in sorted(backend.models)}
            snapshot["deployment"] = describe_deployment(backend.declared_deployment,
                                                         backend.learned_deployment)
            backends.append(snapshot)
        body = {"policy": policy.name, "backends": backends}
        respond_json(client, 200, orjson.dumps(body), rid)

    def backend_action(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """POST /admin/backends/NAME/drain (no new requests; those in flight finish) or
        /admin/backends/NAME/enable (back in rotation)."""
        name, _, action = request.path[len(BACKEND_ACTIONS):].rpartition("/")
        backend = self._backends.named(name)
        if backend is None or action not in ("drain", "enable"):
            respond_error(client, NotFound(
                f"Unknown backend or action: {request.path} (expected "
                f"{BACKEND_ACTIONS}NAME/drain or {BACKEND_ACTIONS}NAME/enable)"), rid)
            return
        now = time.monotonic()
        backend.set_draining(action == "drain", now)
        log.warning("backend %s %s through the admin API", name,
                    "draining" if backend.draining else "enabled")
        respond_json(client, 200, orjson.dumps(backend.snapshot(now)), rid)

    async def reload(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """POST /admin/reload: re-read the config file, as SIGHUP does, and answer what came
        of it: `result` ok or failed, the `problems`, the settings `restart_needed`."""
        if self._reload is None:
            respond_error(client, NotFound("this gateway was not started from a config file "
                                           "(warden serve -c FILE): there is none to reload"),
                          rid)
            return
        outcome = await self._reload("asked through the admin API")
        respond_json(client, 200, orjson.dumps(outcome), rid)
