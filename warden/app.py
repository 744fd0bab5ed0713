"""build_app(settings) wires one gateway from explicit parts; start/stop own its tasks."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from warden.config.schema import Settings
from warden.edge.gateway import GatewayHandler
from warden.edge.server import HttpServer, ServerLimits
from warden.errors import UpstreamError
from warden.fleet.discovery import Discovery
from warden.fleet.registry import BackendRegistry
from warden.fleet.watch import HealthChecker, Scraper
from warden.forensics.incidents import IncidentDetector
from warden.guard.guard import Guard
from warden.guard.quarantine import Quarantine, QuarantineStore
from warden.guard.quarantine_store import FileStore, RedisStore
from warden.observe.metrics import GatewayMetrics
from warden.proxy.forwarder import Forwarder
from warden.record.recorder import Recorder
from warden.routing.policy import build_policy
from warden.upstream.fetch import fetch

log = logging.getLogger("warden")


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.backends = BackendRegistry(settings)
        self.recorder = Recorder(settings.recorder) if settings.recorder.enabled else None
        self.metrics = GatewayMetrics(self.backends, time.monotonic, self.recorder)
        self.policy = build_policy(settings.routing, settings.scrape.staleness)
        self.forwarder = Forwarder(settings, self.backends, self.policy, self.metrics,
                                   self.recorder)
        self.quarantine = build_quarantine(settings)
        self.guard = Guard(settings.guard, self.quarantine) \
            if settings.guard.mode != "off" else None
        self.metrics.guard = self.guard
        self.handler = GatewayHandler(self.forwarder, self.backends, self.metrics,
                                      self.recorder, self.guard, settings.routing)
        self.incidents = IncidentDetector(
            settings.recorder.dir, self._in_flight_on, scrape=self._scrape_metrics,
            on_opened=self._implicate if self.quarantine is not None else None)
        self.forwarder.incidents = self.incidents
        for backend in self.backends:
            backend.recent = self.incidents.recent_of(backend.name)
        self.discovery = Discovery(self.backends, settings.discovery,
                                   request_timeout=min(settings.timeouts.connect, 5.0),
                                   on_lost=self.incidents.connect_failed)
        self.scraper = Scraper(settings.scrape, on_lost=self.incidents.connect_failed)
        self.metrics.scraper = self.scraper
        self.metrics.policy = self.policy
        self.health = HealthChecker(settings.health.active,
                                    on_lost=self.incidents.connect_failed)
        self.server: HttpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, port: int | None = None) -> None:
        """Learn the fleet once, then listen. `port` overrides the configured one (0 = any)."""
        self.forwarder.bind(asyncio.get_running_loop())
        self.incidents.bind(asyncio.get_running_loop())
        if self.recorder is not None:
            self.recorder.start()
            self._tasks.append(asyncio.create_task(self.recorder.run()))
        if self.quarantine is not None:
            await self._load_quarantine()
        await self.discovery.refresh_all()
        limits = ServerLimits(max_body=self.settings.limits.max_body,
                              max_header_bytes=self.settings.limits.max_header_bytes,
                              keepalive_timeout=self.settings.timeouts.client_keepalive)
        self.server = HttpServer(self.handler, limits)
        host, configured_port = self.settings.listen
        await self.server.start(host, configured_port if port is None else port)
        self._tasks.append(asyncio.create_task(self.discovery.run()))
        if self.settings.scrape.enabled:
            self._tasks.append(asyncio.create_task(self.scraper.run(self.backends)))
        if self.settings.health.active.enabled:
            self._tasks.append(asyncio.create_task(self.health.run(self.backends)))
        self._tasks.append(asyncio.create_task(self.forwarder.run_timeouts()))
        if self.quarantine is not None and self.settings.guard.quarantine.store == "redis":
            self._tasks.append(asyncio.create_task(self._refresh_quarantine()))
        log.info("warden listening on %s:%d", host, self.server.port)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def in_flight(self) -> int:
        return sum(b.in_flight for b in self.backends)

    def _in_flight_on(self, backend: str) -> list:
        return [relay for relay in self.forwarder.active if relay.backend == backend]

    async def _scrape_metrics(self, name: str) -> str:
        backend = self.backends.named(name)
        if backend is None:
            raise UpstreamError(f"no backend named {name}")
        status, body = await fetch(backend.pool, "GET", "/metrics", backend.host_header,
                                   timeout=self.settings.timeouts.connect)
        if status != 200:
            raise UpstreamError(f"/metrics answered {status}")
        return body.decode("utf-8", "replace")

    async def _load_quarantine(self) -> None:
        assert self.quarantine is not None
        try:
            await self.quarantine.load()
        except Exception as e:  # a store that is down must not keep the gateway down
            log.error("quarantine: cannot read the store (%s); starting with it empty and "
                      "retrying", e)

    async def _refresh_quarantine(self) -> None:
        """Redis: re-read what other replicas struck or lifted."""
        assert self.quarantine is not None
        while True:
            await asyncio.sleep(self.settings.guard.quarantine.refresh)
            try:
                await self.quarantine.refresh()
            except Exception as e:
                log.warning("quarantine: refresh from Redis failed: %s", e)

    def _implicate(self, incident: dict) -> None:
        task = asyncio.get_running_loop().create_task(self._strike(incident))
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)

    async def _strike(self, incident: dict) -> None:
        assert self.quarantine is not None
        try:
            await self.quarantine.implicate(incident)
        except Exception as e:
            log.error("quarantine: incident %s could not be recorded: %s", incident["id"], e)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; let requests in flight finish for up to `grace` seconds; then end
        the rest (each still ends exactly once, as cancelled) and close."""
        if self.server is not None:
            self.server.stop_listening()
            deadline = time.monotonic() + grace
            while self.in_flight() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.forwarder.cancel_all()
            await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.incidents.close_all()
        if self.quarantine is not None:
            await asyncio.gather(*self._tasks, return_exceptions=True)  # strikes under way
            await self.quarantine.store.close()
        if self.recorder is not None:  # after every exchange has ended: their ends go too
            await self.recorder.stop()
        self.backends.close()


def build_quarantine(settings: Settings) -> Quarantine | None:
    spec = settings.guard.quarantine
    if settings.guard.mode == "off" or not spec.enabled:
        return None
    store: QuarantineStore = RedisStore(spec.redis_url, spec.key_prefix) \
        if spec.store == "redis" else FileStore(Path(settings.recorder.dir) / "quarantine.json")
    return Quarantine(store, spec.max_implicated)


def build_app(settings: Settings) -> Gateway:
    return Gateway(settings)
