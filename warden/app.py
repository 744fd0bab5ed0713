"""build_app(settings) wires one gateway from explicit parts; start/stop own its tasks."""

from __future__ import annotations

import asyncio
import logging
import time

from warden.config.schema import Settings
from warden.edge.gateway import GatewayHandler
from warden.edge.server import HttpServer, ServerLimits
from warden.errors import UpstreamError
from warden.fleet.discovery import Discovery
from warden.fleet.registry import BackendRegistry
from warden.forensics.incidents import IncidentDetector
from warden.guard.guard import Guard
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
        self.forwarder = Forwarder(settings, self.backends, build_policy(settings.routing.policy),
                                   self.metrics, self.recorder)
        self.guard = Guard(settings.guard) if settings.guard.mode != "off" else None
        self.metrics.guard = self.guard
        self.handler = GatewayHandler(self.forwarder, self.backends, self.metrics,
                                      self.recorder, self.guard)
        self.incidents = IncidentDetector(settings.recorder.dir, self._in_flight_on,
                                          scrape=self._scrape_metrics)
        self.forwarder.incidents = self.incidents
        for backend in self.backends:
            backend.recent = self.incidents.recent_of(backend.name)
        self.discovery = Discovery(self.backends, settings.discovery,
                                   request_timeout=min(settings.timeouts.connect, 5.0),
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
        await self.discovery.refresh_all()
        limits = ServerLimits(max_body=self.settings.limits.max_body,
                              max_header_bytes=self.settings.limits.max_header_bytes,
                              keepalive_timeout=self.settings.timeouts.client_keepalive)
        self.server = HttpServer(self.handler, limits)
        host, configured_port = self.settings.listen
        await self.server.start(host, configured_port if port is None else port)
        self._tasks.append(asyncio.create_task(self.discovery.run()))
        self._tasks.append(asyncio.create_task(self.forwarder.run_timeouts()))
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
        backend = next(b for b in self.backends if b.name == name)
        status, body = await fetch(backend.pool, "GET", "/metrics", backend.host_header,
                                   timeout=self.settings.timeouts.connect)
        if status != 200:
            raise UpstreamError(f"/metrics answered {status}")
        return body.decode("utf-8", "replace")

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
        if self.recorder is not None:  # after every exchange has ended: their ends go too
            await self.recorder.stop()
        self.backends.close()


def build_app(settings: Settings) -> Gateway:
    return Gateway(settings)
