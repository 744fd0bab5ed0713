"""build_app(settings) wires one gateway from explicit parts; start/stop own its tasks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from warden.app_quarantine import QuarantineParts
from warden.config.watcher import ConfigFileWatcher
from warden.edge.gateway import GatewayHandler
from warden.edge.server import HttpServer, ServerLimits
from warden.errors import UpstreamError
from warden.exchange import RequestIds
from warden.fleet.backend import Backend
from warden.fleet.discovery import Discovery
from warden.fleet.fact_learner import FactLearner
from warden.fleet.registry import BackendRegistry
from warden.fleet.watch import HealthChecker, Scraper
from warden.forensics.incidents import IncidentDetector
from warden.guard.guard import Guard
from warden.guard.probation import Probation
from warden.guard.quarantine import Quarantine
from warden.observe.edge_metrics import EdgeCollector
from warden.observe.metrics import GatewayMetrics
from warden.proxy.forwarder import Forwarder
from warden.record.lock import StateLock, hold_state
from warden.record.recorder import Recorder
from warden.routing.protocol import RoutingPolicy
from warden.runtime import Runtime, build_runtime, restart_only_changes
from warden.settings import ConfigError, Settings, read_config, settings_from_yaml
from warden.upstream.fetch import fetch

log = logging.getLogger("warden")


class Gateway:
    """One gateway: the parts that live as long as the process (the listening server, the
    flight recorder, the metrics, the incident detector, the quarantine, the forwarder and
    its requests in flight, the watch loops) and the current `Runtime`, which `reload`
    replaces whole."""

    def __init__(self, settings: Settings, source: Path | None = None):
        """`source`: the config file `settings` came from, which `reload_source` re-reads."""
        self.settings = settings
        self._started_with = settings  # what a reload cannot change is compared to this
        self.source = source
        # The text the running config was read from (a changed file with the same text
        # is not reloaded).
        self._source_text = _read_or_none(source) if source is not None else None
        self.recorder = Recorder(settings.recorder) if settings.recorder.enabled else None
        parts = self.quarantine_parts = build_quarantine(
            settings, lambda name: name in self.incidents.down)
        self.runtime = build_runtime(settings, self._probation())
        self.metrics = GatewayMetrics(self.backends, time.monotonic, self.recorder)
        self.forwarder = Forwarder(settings, self.backends, self.policy, self.metrics,
                                   self.recorder, parts.probe_ended if parts else None)
        self.incidents = IncidentDetector(
            settings.recorder.dir, self._in_flight_on, scrape=self._scrape_metrics,
            on_opened=parts.implicate if parts is not None else None)
        self.forwarder.incidents = self.incidents
        self.facts = FactLearner(settings)
        self.discovery = Discovery(self.backends, settings,
                                   on_lost=self.incidents.connect_failed,
                                   on_reachable=self.incidents.reachable, learner=self.facts)
        self.scraper = Scraper(settings.scrape, on_lost=self.incidents.restarted)
        self.metrics.scraper = self.scraper
        self.health = HealthChecker(settings.health.active,
                                    on_lost=self.incidents.connect_failed,
                                    on_alive=self.incidents.alive_again)
        self.server: HttpServer | None = None
        self._request_ids = RequestIds()  # one id sequence for the process, across reloads
        self.handler: GatewayHandler
        self._activate(self.runtime)
        self._reloading = asyncio.Lock()
        self._stopping = False  # a reload that comes during stop() is not applied
        self._tasks: list[asyncio.Task[None]] = []
        self._locks: list[StateLock] = []

    @property
    def backends(self) -> BackendRegistry:
        return self.runtime.backends

    @property
    def policy(self) -> RoutingPolicy:
        return self.runtime.policy

    @property
    def guard(self) -> Guard | None:
        return self.runtime.guard

    def _probation(self) -> Probation | None:
        return self.quarantine_parts.probation if self.quarantine_parts is not None else None

    @property
    def quarantine(self) -> Quarantine | None:
        return self.quarantine_parts.quarantine if self.quarantine_parts is not None else None

    def _activate(self, runtime: Runtime) -> None:
        """Make `runtime` the one new requests see. Synchronous on purpose: no request can
        run between two of these steps and see half an old and half a new config."""
        self.runtime = runtime
        settings = runtime.settings
        self.forwarder.use(settings, runtime.backends, runtime.policy)
        self.handler = GatewayHandler(self.forwarder, runtime.backends, self.metrics,
                                      self.recorder, runtime.guard, settings.routing,
                                      self._request_ids,
                                      self.reload_source if self.source is not None else None)
        if self.server is not None:
            self.server.handler = self.handler
            self.server.limits = server_limits(settings)  # connections opened from now on
        self.metrics.use(runtime.backends, runtime.guard, runtime.policy)
        self.metrics.config_loaded_at = time.time()
        self.discovery.use(runtime.backends, settings)
        self.facts.use(settings, runtime.backends)
        if self.quarantine_parts is not None:
            self.quarantine_parts.use(settings.guard.quarantine)
        self.scraper.spec = settings.scrape
        self.health.spec = settings.health.active
        for backend in runtime.backends:
            backend.recent = self.incidents.recent_of(backend.name)
        if self.server is not None:  # started: the watch loops follow the new fleet
            self._follow_backends()

    def _follow_backends(self) -> None:
        settings = self.runtime.settings
        self.scraper.follow(self.backends if settings.scrape.enabled else ())
        self.health.follow(self.backends if settings.health.active.enabled else ())

    async def start(self, port: int | None = None) -> None:
        """Learn the fleet once, then listen. `port` overrides the configured one (0 = any).
        The state directory is locked first: a second gateway on it stops here, having
        touched nothing of the first's (record/lock.py)."""
        self._locks = hold_state(self.settings)
        self.forwarder.bind(asyncio.get_running_loop())
        self.incidents.bind(asyncio.get_running_loop())
        if self.recorder is not None:
            self.recorder.open()
            self._tasks.append(asyncio.create_task(self.recorder.run()))
        if self.quarantine_parts is not None:
            await self.quarantine_parts.start()
        await self.discovery.refresh_all()
        self.server = HttpServer(self.handler, server_limits(self.settings),
                                 writes=self.forwarder.writes,
                                 request_id=self._request_ids.pick)
        self.metrics.registry.register(EdgeCollector(self.server))  # type: ignore[arg-type]
        host, configured_port = self.settings.listen
        await self.server.start(host, configured_port if port is None else port)
        if self.quarantine_parts is not None:  # (its 403s name the admin URL, known now)
            self.quarantine_parts.quarantine.admin_url = admin_url(host, self.server.port)
        self._tasks.append(asyncio.create_task(self.discovery.run()))
        self._follow_backends()
        self._tasks.append(asyncio.create_task(self.forwarder.run_timeouts()))
        if self.source is not None:
            watcher = ConfigFileWatcher(self.source, lambda: self.settings.reload,
                                        lambda: self.reload_source("the file changed",
                                                                   only_if_changed=True))
            self._tasks.append(asyncio.create_task(watcher.run()))
        log.info("warden listening on %s:%d", host, self.server.port)

    # -- reload ----------------------------------------------------------------------------

    async def reload_source(self, why: str, only_if_changed: bool = False) -> dict:
        """Re-read the config file and reload it (SIGHUP, `warden reload`, or the watcher saw
        it change: `only_if_changed` skips a file whose text is the running one's). A config
        that does not load keeps the running one, and the log says why. Returns what it did
        (as `POST /admin/reload` answers): `result` ok, failed (with the `problems`) or
        unchanged, and the settings `restart_needed`."""
        assert self.source is not None, "a gateway built without a config file"
        done: dict = {"config": str(self.source)}
        try:
            text = read_config(self.source)
            if only_if_changed and text == self._source_text:
                return {**done, "result": "unchanged"}  # touched, not changed
            settings = settings_from_yaml(text, self.source)
        except ConfigError as e:
            self.metrics.reloads["failed"] += 1
            log.error("config reload (%s): %s is invalid; the running config stays:\n  %s",
                      why, self.source, "\n  ".join(e.problems))
            return {**done, "result": "failed", "problems": e.problems}
        self._source_text = text
        waiting = await self.reload(settings, why)
        return {**done, "result": "ok", "restart_needed": waiting,
                "backends": len(self.backends), "policy": self.policy.name}

    async def reload(self, settings: Settings, why: str = "asked") -> list[str]:
        """Build a runtime for `settings` and swap it in; requests in flight carry on.
        Returns the settings that changed but wait for a restart (also logged)."""
        async with self._reloading:  # two SIGHUPs in a row reload one after the other
            if self._stopping:
                return []
            old = self.runtime
            runtime = build_runtime(settings, self._probation(), old)
            added = runtime.backends.added_since(old.backends)
            removed = runtime.backends.removed_since(old.backends)
            # New engines are asked what they serve before they are routed to (as at start).
            # Meanwhile requests still see the old runtime (kept backends already carry
            # their new settings: harmless, each is a plain value).
            await asyncio.gather(*(self.discovery.refresh(b) for b in added))
            if self._stopping:
                return []
            runtime.backends.reindex()
            waiting = restart_only_changes(self._started_with, settings)
            self.settings = settings
            self._activate(runtime)
            for backend in removed:  # its requests in flight finish; then its connections close
                backend.pool.retire()
            self.metrics.reloads["ok"] += 1
        log.info("config reloaded (%s): %d backends (%s), policy %s", why,
                 len(runtime.backends), _changes(added, removed), runtime.policy.name)
        if waiting:
            log.warning("config reload: %s changed; that takes effect at the next restart",
                        ", ".join(waiting))
        return waiting

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def in_flight(self) -> int:
        """Requests in flight, on any backend (one a reload removed included)."""
        return len(self.forwarder.active)

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

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting; let requests in flight finish for up to `grace` seconds; then end
        the rest (each still ends exactly once, as cancelled) and close."""
        self._stopping = True
        if self.server is not None:
            self.server.stop_listening()
            deadline = time.monotonic() + grace
            while self.in_flight() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.forwarder.cancel_all()
            await self.server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, self.scraper.loops.stop(), self.health.loops.stop(),
                             self.facts.stop(), return_exceptions=True)
        self.incidents.close_all()
        if self.quarantine_parts is not None:
            await self.quarantine_parts.stop()
        if self.recorder is not None:  # after every exchange has ended: their ends go too
            await self.recorder.close()
        self.backends.close()
        for lock in self._locks:
            lock.release()


def build_quarantine(settings: Settings,
                     is_down: Callable[[str], bool]) -> QuarantineParts | None:
    spec = settings.guard.quarantine
    if settings.guard.mode == "off" or not spec.enabled:
        return None
    return QuarantineParts(settings, is_down)


def admin_url(host: str, port: int) -> str:
    """Where this gateway's admin API is reached from its own host."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _read_or_none(path: Path) -> str | None:
    try:
        return read_config(path)
    except ConfigError:
        return None


def server_limits(settings: Settings) -> ServerLimits:
    limits = settings.limits
    return ServerLimits(max_body=limits.max_body, max_body_buffer=limits.max_body_buffer,
                        max_header_bytes=limits.max_header_bytes,
                        max_header_count=limits.max_header_count,
                        keepalive_timeout=settings.timeouts.client_keepalive)


def _changes(added: list[Backend], removed: list[Backend]) -> str:
    parts = [f"+{b.name}" for b in added] + [f"-{b.name}" for b in removed]
    return " ".join(parts) if parts else "same set"


def build_app(settings: Settings, source: Path | None = None) -> Gateway:
    return Gateway(settings, source)
