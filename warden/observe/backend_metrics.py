"""Per-backend gauges: routing state, breaker, and the engine signals the policies use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warden.fleet.breaker import CLOSED, HALF_OPEN

if TYPE_CHECKING:
    from warden.fleet.backend import Backend
    from warden.fleet.watch import Scraper
    from warden.routing.protocol import RoutingPolicy

BREAKER_VALUE = {CLOSED: 0.0, HALF_OPEN: 1.0}  # open: 2
STATES = ("ready", "draining", "unhealthy", "unreachable", "ejected", "breaker_open",
          "breaker_half_open")
# (gauge suffix, help, the EngineLoad attribute)
SIGNALS = (
    ("kv_cache_usage", "KV-cache usage (0..1), as last scraped", "kv_usage"),
    ("waiting", "Requests waiting in the engine, as last scraped", "waiting"),
    ("running", "Requests running in the engine, as last scraped", "running"),
    ("preemptions", "Preemptions between the last two scrapes", "preemptions"),
    ("prefix_cache_hit_rate", "Prefix-cache hit rate between the last two scrapes",
     "prefix_hit_rate"),
)


def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["backend", *labels])


def backend_families(backends: Iterable[Backend], now: float, scraper: Scraper | None,
                     policy: RoutingPolicy | None) -> Iterable[Metric]:
    backends = list(backends)
    in_flight = gauge("warden_backend_in_flight", "Requests this gateway has in flight on "
                      "the backend")
    available = gauge("warden_backend_available", "1 if the backend may be picked, else 0")
    state = gauge("warden_backend_state", "1 for the backend's current state", "state")
    breaker = gauge("warden_backend_breaker_state", "Circuit breaker: 0 closed, 1 half-open, "
                    "2 open")
    failures = CounterMetricFamily("warden_backend_failures", "Requests that failed on the "
                                   "backend (5xx, dropped, timed out, refused)",
                                   labels=["backend"])
    fresh = gauge("warden_backend_signals_fresh", "1 if the backend's /metrics signals are "
                  "fresh enough to route on, else 0")
    missing = gauge("warden_backend_signal_missing", "1 for each signal the backend's "
                    "/metrics does not export", "signal")
    signals = {attr: gauge(f"warden_backend_{suffix}", doc) for suffix, doc, attr in SIGNALS}
    score = gauge("warden_backend_score", "The routing policy's score for the backend now "
                  "(scoring policies only)")
    for backend in backends:
        name = backend.name
        in_flight.add_metric([name], backend.in_flight)
        available.add_metric([name], 1.0 if backend.available(now) else 0.0)
        current = backend.state(now)
        for each in STATES:
            state.add_metric([name, each], 1.0 if each == current else 0.0)
        if backend.breaker is not None:
            breaker.add_metric([name], BREAKER_VALUE.get(backend.breaker.state, 2.0))
        failures.add_metric([name], backend.failures)
        if scraper is not None:
            fresh.add_metric([name], 0.0 if name in scraper.stale else 1.0)
        load = backend.load
        if load is not None:
            for signal in load.missing():
                missing.add_metric([name, signal], 1.0)
            for attr, family in signals.items():
                value = getattr(load, attr)
                if value is not None:
                    family.add_metric([name], value)
        rating = policy.explain(backend, now) if policy is not None else None
        if rating is not None:
            score.add_metric([name], rating["score"])
    yield from (in_flight, available, state, breaker, failures, fresh, missing,
                *signals.values(), score)
    degraded = policy.degraded_picks if policy is not None else None
    if degraded is not None:
        picks = CounterMetricFamily("warden_routing_degraded_picks", "Picks made while some "
                                    "candidate's load signal was missing or stale")
        picks.add_metric([], degraded)
        yield picks
