"""Polls each backend's /v1/models: which models it serves, and whether it answers at all."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson

from warden.config.schema import Settings
from warden.errors import ConnectFailed, UpstreamError
from warden.fleet.backend import Backend
from warden.fleet.fact_learner import FactLearner
from warden.fleet.registry import BackendRegistry
from warden.upstream.fetch import fetch

log = logging.getLogger("warden.discovery")


class Discovery:
    def __init__(self, backends: BackendRegistry, settings: Settings,
                 on_lost: Callable[[str, float, str], None] | None = None,
                 on_reachable: Callable[[str], None] | None = None,
                 learner: FactLearner | None = None):
        """`on_lost(backend, now, how)`: a backend that answered stopped answering;
        `on_reachable(backend)`: it answered its model list (the incident detector hears of
        both). `learner` hears of every answer and every refused connection."""
        self._on_lost = on_lost
        self._on_reachable = on_reachable
        self._learner = learner
        self.use(backends, settings)

    def use(self, backends: BackendRegistry, settings: Settings) -> None:
        """Poll these backends, as `settings` says (at start; after a reload, from the next
        round on)."""
        self._backends = backends
        self._spec = settings.discovery
        self._timeout = min(settings.timeouts.connect, 5.0)

    async def refresh_all(self) -> None:
        changed = await asyncio.gather(*(self.refresh(b) for b in self._backends))
        if any(changed):   # (the registry in use now: a reload may have come meanwhile)
            self._backends.reindex()

    async def refresh(self, backend: Backend) -> bool:
        """Poll one backend; True if the set of models it serves changed (the caller
        reindexes its registry)."""
        try:
            status, body = await fetch(backend.pool, "GET", "/v1/models", backend.host_header,
                                       self._timeout, headers=backend.target.auth_line)
        except ConnectFailed as e:
            now = time.monotonic()
            if backend.reachable:
                log.warning("backend %s is unreachable: %s", backend.name, e.message)
                if self._on_lost is not None:
                    self._on_lost(backend.name, now, "discovery poll: connection refused")
            backend.mark_unreachable(now, self._spec.unreachable_cooldown, e.message)
            if self._learner is not None:
                self._learner.refused(backend)
            return False
        except UpstreamError as e:
            log.warning("backend %s: model discovery failed: %s", backend.name, e.message)
            return False
        if status != 200:
            log.warning("backend %s: GET /v1/models answered %d", backend.name, status)
            return False
        try:
            cards = orjson.loads(body)["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            cards = None
        if not isinstance(cards, list):   # (`"data": null`, as some servers write none)
            log.warning("backend %s: /v1/models is not a model list", backend.name)
            return False
        if not backend.reachable:
            log.info("backend %s is reachable again", backend.name)
        backend.mark_reachable(time.monotonic())
        if self._on_reachable is not None:
            self._on_reachable(backend.name)
        changed = backend.learn_models([c for c in cards if isinstance(c, dict)])
        if changed:
            log.info("backend %s serves %s", backend.name, ", ".join(sorted(backend.models)))
        if backend.vllm_version is None:
            await self._learn_version(backend)
        if self._learner is not None:
            self._learner.answered(backend)
        return changed

    async def _learn_version(self, backend: Backend) -> None:
        """Its vLLM version, from /version (the guard's rules depend on it)."""
        try:
            status, body = await fetch(backend.pool, "GET", "/version", backend.host_header,
                                       self._timeout)
            version = orjson.loads(body).get("version") if status == 200 else None
        except (UpstreamError, orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(version, str):
            backend.vllm_version = version
            log.info("backend %s runs vLLM %s", backend.name, version)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._spec.interval)
            await self.refresh_all()
