"""Scorers: each rates one backend in [0, 1] (1 = the best place for this request), or says
it cannot (None: the signal is missing or stale). A scoring policy takes the weighted mean of
the scorers that could rate a backend; one that cannot is left out, never read as 0 or 1.

A scorer gets the backend's load already checked for freshness (`fresh_load`: None when
missing or stale), looked up once per backend for all scorers.

Between scrapes the gateway's own requests are added to what the engine last said: the
requests sent there since the scrape (`in_flight - in_flight_at_scrape`, when positive)
count as waiting if the engine was already queueing, else as running. So a burst spreads
instead of piling onto the backend that looked idlest a second ago.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from warden.config.schema import OverloadSpec

if TYPE_CHECKING:
    from warden.fleet.backend import Backend
    from warden.fleet.signals import EngineLoad


@dataclass
class Scene:
    """What scorers know besides the backend: the time, how fresh a signal must be, the load
    scale, and this request's affinity targets (if any)."""

    now: float
    stale_after: float
    load_scale: float
    overload: OverloadSpec
    prefix_target: Backend | None = None


def fresh_load(backend: Backend, scene: Scene) -> EngineLoad | None:
    load = backend.load
    if load is None or scene.now - load.at > scene.stale_after:
        return None
    return load


def estimated(load: EngineLoad, in_flight: int) -> tuple[float | None, float | None]:
    """(waiting, running) now: as scraped, plus this gateway's requests sent since."""
    waiting, running = load.waiting, load.running
    added = in_flight - load.in_flight_at_scrape
    if added > 0:
        if waiting:  # already queueing: the new ones queue too
            waiting += added
        elif running is not None:
            running += added
    return waiting, running


# KV-cache usage below this is no concern: vLLM preempts only when blocks run out, and a
# cache kept warm (prefixes) reads as used. Above it the headroom scores linearly to 0.
KV_KNEE = 0.8


def kv_cache(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    if load is None or load.kv_usage is None:
        return None
    return min(1.0, max(0.0, (1.0 - load.kv_usage) / (1.0 - KV_KNEE)))


def queue(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    if load is None or load.waiting is None:
        return None
    return 1.0 / (1.0 + estimated(load, backend.in_flight)[0])  # type: ignore[operator]


def running(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    if load is None or load.running is None:
        return None
    scale = scene.load_scale
    return scale / (scale + estimated(load, backend.in_flight)[1])  # type: ignore[operator]


def preemptions(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    if load is None or load.preemptions is None:
        return None
    return 1.0 / (1.0 + load.preemptions)


def in_flight(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    """Always known: the gateway counts its own requests."""
    scale = scene.load_scale
    return scale / (scale + backend.in_flight)


def prefix(backend: Backend, load: EngineLoad | None, scene: Scene) -> float | None:
    """1 for the backend that likely holds this request's prompt prefix, unless it is
    overloaded; 0 for the others (and for all when the request has no prefix to key on)."""
    target = scene.prefix_target
    return 1.0 if target is backend and not overloaded(backend, scene) else 0.0


def overloaded(backend: Backend, scene: Scene) -> bool:
    """Too loaded for an affinity to hold: at its in-flight cap, or (signals fresh) its KV
    cache or queue past the `routing.overload` bounds."""
    if backend.in_flight >= backend.max_in_flight:
        return True
    load = fresh_load(backend, scene)
    if load is None:
        return False
    waiting, _ = estimated(load, backend.in_flight)
    limits = scene.overload
    return ((load.kv_usage is not None and load.kv_usage >= limits.kv_cache)
            or (waiting is not None and waiting >= limits.waiting))


Scorer = Callable[["Backend", "EngineLoad | None", Scene], "float | None"]

SCORERS: dict[str, Scorer] = {
    "kv_cache": kv_cache, "queue": queue, "running": running, "preemptions": preemptions,
    "in_flight": in_flight, "prefix": prefix,
}
