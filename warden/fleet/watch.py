"""The gateway's watch over its backends: one loop per backend per concern (its /metrics, its
/health), so a backend that hangs delays nobody else's signals.

Rules: a watcher never raises out of its loop (a failed read is a state, logged on change,
not per attempt); transitions are what get logged and reported, so a dead backend makes one
line, not one per second; a death seen here (a failed health check, an engine that restarted
between two scrapes) goes to `on_lost`, the incident detector.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from warden.config.schema import ActiveHealthSpec, ScrapeSpec
from warden.errors import PoolExhausted, UpstreamError, UpstreamTimeout
from warden.fleet.backend import Backend
from warden.fleet.deployment import learned_deployment
from warden.fleet.signals import engine_load
from warden.upstream.fetch import fetch

log = logging.getLogger("warden.watch")

LostHook = Callable[[str, float, str], None]
AliveHook = Callable[[str, str], None]


class BackendLoops:
    """One task per backend running `step(backend)`, then sleeping `interval()`, forever.
    `follow` makes the set of loops match a set of backends (at start and at each config
    reload): a backend that stays keeps its loop and its pace."""

    def __init__(self, step: Callable[[Backend], Awaitable[None]],
                 interval: Callable[[], float]):
        self._step = step
        self._interval = interval
        self._tasks: dict[Backend, asyncio.Task[None]] = {}

    def follow(self, backends: Iterable[Backend]) -> list[Backend]:
        """Loops for exactly these backends; returns those whose loop was stopped."""
        wanted = list(backends)
        gone = [b for b in self._tasks if b not in wanted]
        for backend in gone:
            self._tasks.pop(backend).cancel()
        for backend in wanted:
            if backend not in self._tasks:
                self._tasks[backend] = asyncio.get_running_loop().create_task(
                    self._loop(backend))
        return gone

    async def _loop(self, backend: Backend) -> None:
        await self._step(backend)
        # Then a random share of an interval more, once: the loops of a fleet, started
        # together, are spread over the interval, so that their steps (a scrape's parse, on
        # the event loop: ~0.3 ms for a 127 KB vLLM page) do not come in one burst.
        await asyncio.sleep(self._interval() * (1 + random.random()))
        while True:
            await self._step(backend)
            await asyncio.sleep(self._interval())

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Scraper:
    """Reads each backend's /metrics into `backend.load` (see `warden.fleet.signals`) and
    what it proves of the backend's deployment (`warden.fleet.deployment`)."""

    def __init__(self, spec: ScrapeSpec, on_lost: LostHook | None = None):
        self.spec = spec
        self._on_lost = on_lost
        self._missing: dict[str, tuple[str, ...]] = {}
        self.stale: set[str] = set()   # backends whose signals are stale now
        self.loops = BackendLoops(self.scrape, lambda: self.spec.interval)
        # Told of each parse (`note(cause, started)`, time.perf_counter()): the event loop's
        # probe (observe.loop_probe).
        self.note: Callable[[str, float], None] | None = None

    def follow(self, backends: Iterable[Backend]) -> None:
        """Scrape exactly these backends (forgetting what was known of any other)."""
        for backend in self.loops.follow(backends):
            self.stale.discard(backend.name)
            self._missing.pop(backend.name, None)

    async def scrape(self, backend: Backend) -> None:
        try:
            status, body = await fetch(backend.pool, "GET", "/metrics", backend.host_header,
                                       self.spec.staleness)
            if status != 200:
                raise UpstreamError(f"GET /metrics answered {status}")
        except UpstreamError as e:
            backend.scrape_error = e.message
            self._check_fresh(backend, time.monotonic())
            return
        now = time.monotonic()
        started = time.perf_counter()
        text = body.decode("utf-8", "replace")
        load = engine_load(text, now, backend.in_flight, backend.load)
        backend.load = load
        backend.learn_deployment(learned_deployment(text, backend.vllm_version))
        if self.note is not None:
            self.note("scrape_parse", started)
        backend.scrape_error = None
        self._check_fresh(backend, now)
        missing = load.missing()
        if missing != self._missing.get(backend.name, ()):
            self._missing[backend.name] = missing
            if missing:
                log.warning("backend %s: its /metrics has no %s; the policies route without "
                            "them", backend.name, ", ".join(missing))
        if load.restarted:
            log.warning("backend %s restarted: its counters went backwards", backend.name)
            if self._on_lost is not None:
                self._on_lost(backend.name, now, "restarted (its counters went backwards)")

    def _check_fresh(self, backend: Backend, now: float) -> None:
        load = backend.load
        stale = load is None or now - load.at > self.spec.staleness
        if stale and backend.name not in self.stale:
            self.stale.add(backend.name)
            log.warning("backend %s: load signals are stale (%s); routing uses the gateway's "
                        "own counts for it", backend.name, backend.scrape_error or "no scrape")
        elif not stale and backend.name in self.stale:
            self.stale.discard(backend.name)
            log.info("backend %s: load signals are fresh again", backend.name)



class HealthChecker:
    """Active checks: GET `path` every `interval`; `unhealthy_after` failures in a row take
    the backend out of rotation, `healthy_after` passes bring it back."""

    def __init__(self, spec: ActiveHealthSpec, on_lost: LostHook | None = None,
                 on_alive: AliveHook | None = None):
        """`on_alive(backend, how)`: told of every passed check (a dead engine is alive
        again once it passes one, even before `healthy_after` passes bring it back)."""
        self.spec = spec
        self._on_lost = on_lost
        self._on_alive = on_alive
        self._passed: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self.loops = BackendLoops(self.check, lambda: self.spec.interval)

    def follow(self, backends: Iterable[Backend]) -> None:
        """Check exactly these backends (forgetting the counts of any other). One no longer
        checked is not held out by its last verdict: only a check brings it back."""
        for backend in self.loops.follow(backends):
            self._passed.pop(backend.name, None)
            self._failed.pop(backend.name, None)
            if not backend.healthy:
                log.info("backend %s is no longer checked: back in rotation", backend.name)
                backend.set_healthy(True, time.monotonic())

    async def check(self, backend: Backend) -> None:
        spec = self.spec
        slow = False
        try:
            status, _ = await fetch(backend.pool, "GET", spec.path, backend.host_header,
                                    spec.timeout)
            problem = None if status == 200 else f"GET {spec.path} answered {status}"
        except PoolExhausted:   # every connection busy with requests: no verdict (a busy
            return              # backend is not a dead one; a refused connect still fails)
        except UpstreamTimeout as e:
            problem, slow = e.message, True
        except UpstreamError as e:
            problem = e.message
        now = time.monotonic()
        name = backend.name
        if problem is None:
            if self._on_alive is not None:
                self._on_alive(name, "health check passed")
            self._failed[name] = 0
            passed = self._passed[name] = self._passed.get(name, 0) + 1
            if not backend.healthy and passed >= spec.healthy_after:
                log.info("backend %s is healthy again", name)
                backend.mark_reachable(now)
                backend.set_healthy(True, now)
            return
        self._passed[name] = 0
        failed = self._failed[name] = self._failed.get(name, 0) + 1
        if backend.healthy and failed >= spec.unhealthy_after:
            backend.set_healthy(False, now, f"health check: {problem}")
            # A slow answer is not a death: a vLLM API server on a busy host misses the
            # deadline while it serves (measured: a real engine next to a loaded one), and
            # an incident would quarantine the innocent requests in flight on it. A refused
            # connection or an error status is what a dead engine shows.
            if slow:
                log.warning("backend %s is unhealthy: %s (slow, not dead: no incident)", name,
                            problem)
                return
            log.warning("backend %s is unhealthy: %s", name, problem)
            if self._on_lost is not None:
                self._on_lost(name, now, f"health check failed ({problem})")
