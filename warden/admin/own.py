"""The gateway's own endpoints (not proxied): the fleet's models, liveness, readiness, the
version and the metrics. Served through the path table (warden.routes); not on the data path
(so not compiled: warden/compiled.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from warden import __version__
from warden.admin.keys import KeysAdmin
from warden.admin.quarantine import QuarantineAdmin
from warden.edge import wire
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_json
from warden.fleet.registry import BackendRegistry
from warden.observe.metrics import GatewayMetrics

PROMETHEUS = wire.header_block((b"content-type", b"text/plain; version=0.0.4; charset=utf-8"))


class OwnEndpoints:
    def __init__(self, backends: BackendRegistry, metrics: GatewayMetrics,
                 quarantine: QuarantineAdmin, keys: KeysAdmin | None = None,
                 limits: Callable[[], dict] | None = None):
        """`limits`: the state of the limits' store (None: no limits)."""
        self._limits = limits
        self._backends = backends
        self._metrics = metrics
        self._quarantine = quarantine
        self._keys = keys
        # Told of each /metrics rendering (`note(cause, started)`, time.perf_counter()): the
        # event loop's probe (observe.loop_probe).
        self.note: Callable[[str, float], None] | None = None

    def models(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        body = {"object": "list", "data": self._backends.model_cards()}
        respond_json(client, 200, orjson.dumps(body), rid)

    def health(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        respond_json(client, 200, b'{"status":"ok"}', rid)

    def ready(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        now = time.monotonic()
        ready = [b.name for b in self._backends if b.available(now) and b.models]
        body: dict = {"status": "ready" if ready else "unavailable", "backends": ready}
        store = self._quarantine.ready()
        if store is not None:
            body["quarantine"] = store
            if store["fail"] == "closed" and not store["up"]:
                ready = []  # it refuses every request until its store is back
                body["status"] = "unavailable"
        keys = self._keys.ready() if self._keys is not None else None
        if keys is not None:
            body["keys"] = keys
            if self._keys is not None and self._keys.unready:
                ready = []  # its stored keys would be refused: none was read yet
                body["status"] = "unavailable"
        if self._limits is not None:
            limits = body["limits"] = self._limits()
            if limits.get("fail_mode") == "closed" and not limits.get("up", True):
                ready = []  # it refuses what its allowance does not cover
                body["status"] = "unavailable"
        status = 200 if ready else 503
        respond_json(client, status, orjson.dumps(body), rid)

    def version(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        respond_json(client, 200, orjson.dumps({"version": __version__}), rid)

    def prometheus(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        started = time.perf_counter()
        text = self._metrics.render()
        if self.note is not None:
            self.note("metrics_render", started)
        respond_json(client, 200, text, rid, PROMETHEUS)
