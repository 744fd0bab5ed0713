"""One gateway's lifecycle: start (lock the state, learn the fleet, listen, run the loops),
switch to a new runtime, stop (drain, end the rest, close). Built by `build_app` (wiring);
reloads go through `app.reload`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from pathlib import Path

from warden.app.parts import Parts
from warden.app.quarantine import QuarantineParts
from warden.app.reload import Reloader
from warden.app.wiring import admin_url, build_parts, build_routes, server_limits
from warden.config import Settings
from warden.config.watcher import ConfigFileWatcher
from warden.edge.server import HttpServer
from warden.edge.tls import ServedCertificate
from warden.edge.wire import header_block
from warden.fleet.registry import BackendRegistry
from warden.forensics.incidents import IncidentDetector
from warden.guard.guard import Guard
from warden.guard.quarantine import Quarantine
from warden.observe.edge_metrics import EdgeCollector
from warden.observe.loop_metrics import LoopCollector
from warden.observe.metrics import GatewayMetrics
from warden.proxy.forwarder import Forwarder
from warden.record.lock import StateLock, hold_state
from warden.record.recorder import Recorder
from warden.routes import Routes
from warden.routing.protocol import RoutingPolicy
from warden.runtime import Current, Runtime

log = logging.getLogger("warden")


class Gateway:
    """The process-long `Parts` and the `Current` runtime, which a reload replaces whole."""

    def __init__(self, settings: Settings, parts: Parts, current: Current,
                 source: Path | None = None):
        """`source`: the config file `settings` came from, which `reload_source` re-reads."""
        self.parts = parts
        self._current = current
        self.source = source
        self.reloader = Reloader(self, settings, source)
        self.server: HttpServer | None = None
        self.admin_server: HttpServer | None = None  # (with `admin_listen`)
        self.admin_handler: Routes | None = None
        self.tls: ServedCertificate | None = None  # (made at start; reloadable)
        self.handler: Routes
        self._tasks: list[asyncio.Task[None]] = []
        self._limits_task: asyncio.Task[None] | None = None
        self._locks: list[StateLock] = []
        self.stopping = False  # a reload that comes during stop() is not applied
        self.activate(current.runtime)

    # -- what tests, the CLI and the admin API read ----------------------------------------

    @property
    def settings(self) -> Settings:
        return self._current.runtime.settings

    @property
    def runtime(self) -> Runtime:
        return self._current.runtime

    @property
    def backends(self) -> BackendRegistry:
        return self._current.runtime.backends

    @property
    def policy(self) -> RoutingPolicy:
        return self._current.runtime.policy

    @property
    def guard(self) -> Guard | None:
        return self._current.runtime.guard

    @property
    def quarantine_parts(self) -> QuarantineParts | None:
        return self.parts.quarantine

    @property
    def quarantine(self) -> Quarantine | None:
        return self.parts.quarantine.quarantine if self.parts.quarantine is not None else None

    @property
    def recorder(self) -> Recorder | None:
        return self.parts.recorder

    @property
    def metrics(self) -> GatewayMetrics:
        return self.parts.metrics

    @property
    def forwarder(self) -> Forwarder:
        return self.parts.forwarder

    @property
    def incidents(self) -> IncidentDetector:
        return self.parts.incidents

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def admin_port(self) -> int:
        """The admin listener's port (`admin_listen`), else the main one's."""
        return self.admin_server.port if self.admin_server is not None else self.port

    def in_flight(self) -> int:
        """Requests in flight, on any backend (one a reload removed included), and those
        waiting for a connection to one (a stop's grace waits for them too)."""
        forwarder = self.parts.forwarder
        return len(forwarder.active) + len(forwarder.connecting)

    # -- runtime ---------------------------------------------------------------------------

    def activate(self, runtime: Runtime) -> None:
        """Make `runtime` the one new requests see. Synchronous on purpose: no request can
        run between two of these steps and see half an old and half a new config."""
        self._current.runtime = runtime
        settings, parts = runtime.settings, self.parts
        parts.keys.use_config(settings.auth)  # (the stored keys stay)
        parts.forwarder.use(settings, runtime.backends, runtime.policy)
        # (The admin API's listener is the one started: `admin_listen` takes a restart.)
        apart = self.admin_server is not None if self.server is not None \
            else settings.admin_listen is not None
        self.handler, self.admin_handler = build_routes(
            runtime, parts, self.reloader.reload_source if self.source is not None else None,
            apart)
        answers_carry = self._answer_lines()
        if self.server is not None:
            self.server.handler = self.handler
            self.server.limits = server_limits(settings)  # connections opened from now on
            self.server.add_to_answers(answers_carry)
            self._reload_certificate()
        if self.admin_server is not None and self.admin_handler is not None:
            self.admin_server.handler = self.admin_handler
            self.admin_server.add_to_answers(answers_carry)
        parts.metrics.use(runtime.backends, runtime.guard, runtime.policy)
        parts.metrics.config_loaded_at = time.time()
        parts.discovery.use(runtime.backends, settings)
        parts.facts.use(settings, runtime.backends)
        if parts.quarantine is not None:
            parts.quarantine.use(settings.guard.quarantine)
        if parts.access_log is not None:  # (sampling follows a reload; turning on waits)
            parts.access_log.use(settings.logging.access_log)
        if parts.tracing is not None:
            parts.tracing.use(settings.tracing)
        parts.scraper.spec = settings.scrape
        parts.health.spec = settings.health.active
        if self.server is not None:  # started: the watch loops follow the new fleet
            self.follow_backends()

    def _answer_lines(self) -> bytes:
        """The config's `response_headers`, as the header lines every answer carries."""
        return header_block(*((name.encode(), value.encode()) for name, value
                              in self.settings.response_headers.items()))

    def _reload_certificate(self) -> None:
        """A reload reads the certificate again (a renewed one is served to new connections;
        open ones carry on). One that does not load leaves the one served, and says why."""
        spec = self.settings.tls
        if self.tls is None or spec is None:
            return
        try:
            self.tls.reload(spec.cert, spec.key)
        except (OSError, ssl.SSLError) as e:
            log.error("tls: %s could not be loaded (%s); the certificate served stays",
                      spec.cert, e)

    def follow_backends(self) -> None:
        settings, parts = self.settings, self.parts
        parts.scraper.follow(self.backends if settings.scrape.enabled else ())
        parts.health.follow(self.backends if settings.health.active.enabled else ())

    async def reload_source(self, why: str, only_if_changed: bool = False) -> dict:
        return await self.reloader.reload_source(why, only_if_changed)

    async def reload(self, settings: Settings, why: str = "asked") -> list[str]:
        return await self.reloader.reload(settings, why)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int | None = None) -> None:
        """Learn the fleet once, then listen. `port` overrides the configured one (0 = any).
        The state directory is locked first: a second gateway on it stops here, having
        touched nothing of the first's (record/lock.py)."""
        settings, parts = self.settings, self.parts
        self._locks = hold_state(settings)
        loop = asyncio.get_running_loop()
        parts.forwarder.bind(loop)
        parts.incidents.bind(loop)
        parts.probe.start(loop)
        parts.metrics.registry.register(LoopCollector(parts.probe))  # type: ignore[arg-type]
        if parts.recorder is not None:
            parts.recorder.open()
            self._tasks.append(asyncio.create_task(parts.recorder.run()))
        if parts.quarantine is not None:
            await parts.quarantine.start()
        if parts.key_store is not None:  # (one try: a database down delays nothing)
            await parts.key_store.start()
            self._tasks.append(asyncio.create_task(parts.key_store.run()))
        if parts.limiter is not None:
            self._limits_task = asyncio.create_task(parts.limiter.run())
        await parts.discovery.refresh_all()
        self.server = HttpServer(self.handler, server_limits(settings),
                                 writes=parts.forwarder.writes, request_id=parts.ids.pick)
        parts.metrics.registry.register(EdgeCollector(self.server))  # type: ignore[arg-type]
        host, configured_port = settings.listen
        if settings.tls is not None:
            self.tls = ServedCertificate(settings.tls.cert, settings.tls.key)
        self.server.add_to_answers(self._answer_lines())
        await self.server.start(host, configured_port if port is None else port,
                                tls=self.tls.context if self.tls is not None else None)
        admin_host, admin_port = host, self.server.port
        if settings.admin_listen is not None and self.admin_handler is not None:
            self.admin_server = HttpServer(self.admin_handler, server_limits(settings),
                                           writes=parts.forwarder.writes,
                                           request_id=parts.ids.pick)
            self.admin_server.add_to_answers(self._answer_lines())
            admin_host, admin_port = settings.admin_listen
            await self.admin_server.start(admin_host, admin_port)
            admin_port = self.admin_server.port
            log.info("warden admin API on %s:%d", admin_host, admin_port)
        if parts.quarantine is not None:  # (its 403s name the admin URL, known now)
            parts.quarantine.quarantine.admin_url = admin_url(
                admin_host, admin_port, self.tls is not None and self.admin_server is None)
        self._tasks.append(asyncio.create_task(parts.discovery.run()))
        self.follow_backends()
        self._tasks.append(asyncio.create_task(parts.forwarder.run_timeouts()))
        if self.source is not None:
            watcher = ConfigFileWatcher(
                self.source, lambda: self.settings.reload,
                lambda: self.reloader.reload_source("the file changed", only_if_changed=True))
            self._tasks.append(asyncio.create_task(watcher.run()))
            # The watcher starts from the file as it is now: a change made during the start
            # (seconds: the stores, the backends' models) is compared with the running text
            # once, here, or it would never be applied.
            if settings.reload.watch:
                self._tasks.append(asyncio.create_task(self._reload_if_changed()))
        log.info("warden listening on %s:%d%s", host, self.server.port,
                 " (TLS)" if self.tls is not None else "")

    async def _reload_if_changed(self) -> None:
        await self.reloader.reload_source("the file changed while starting",
                                          only_if_changed=True)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; let requests in flight finish for up to `grace` seconds; then end
        the rest (each still ends exactly once, as cancelled) and close."""
        self.stopping = True
        parts = self.parts
        if self.admin_server is not None:
            await self.admin_server.close()
        if self.server is not None:
            self.server.stop_listening()
            deadline = time.monotonic() + grace
            while self.in_flight() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            parts.forwarder.cancel_all()
            await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, parts.scraper.loops.stop(),
                             parts.health.loops.stop(), parts.facts.stop(),
                             return_exceptions=True)
        parts.incidents.close_all()
        if parts.quarantine is not None:
            await parts.quarantine.stop()
        if parts.key_store is not None:
            await parts.key_store.close()
        if self._limits_task is not None:  # (after every exchange ended: all settled)
            self._limits_task.cancel()
            await asyncio.gather(self._limits_task, return_exceptions=True)
        if parts.limiter is not None:  # (its slots go back to Redis: within a deadline)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await parts.limiter.close()
        if parts.recorder is not None:  # after every exchange has ended: their ends go too
            await parts.recorder.close()
        # (Its spans too; a collector that hangs is left behind.)
        if parts.tracing is not None and not await parts.tracing.close(timeout=2.0):
            log.warning("tracing: spans not exported within 2s of the stop were lost")
        parts.probe.stop()
        self.backends.close()
        for lock in self._locks:
            lock.release()


def build_app(settings: Settings, source: Path | None = None) -> Gateway:
    parts, current = build_parts(settings)
    return Gateway(settings, parts, current, source)
