"""Every Prometheus metric the gateway exports, defined here and nowhere else.

Each gateway owns its own `CollectorRegistry` (no process-wide state, so tests can build many
gateways). Per-backend gauges are read from the live objects at scrape time, so the hot path
pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from warden.fleet.registry import BackendRegistry

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0)


class _BackendCollector(Collector):
    def __init__(self, backends: BackendRegistry, clock):
        self._backends = backends
        self._clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily("warden_backend_in_flight",
                                      "Requests this gateway has in flight on the backend",
                                      labels=["backend"])
        available = GaugeMetricFamily("warden_backend_available",
                                      "1 if the backend may be picked, else 0",
                                      labels=["backend"])
        now = self._clock()
        for backend in self._backends:
            in_flight.add_metric([backend.name], backend.in_flight)
            available.add_metric([backend.name], 1.0 if backend.available(now) else 0.0)
        yield in_flight
        yield available


class GatewayMetrics:
    def __init__(self, backends: BackendRegistry, clock):
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("warden_requests", "Requests answered, by endpoint and status",
                                 ["endpoint", "status"], registry=self.registry)
        self._verdicts = Counter("warden_stream_verdicts", "How streams ended",
                                 ["verdict"], registry=self.registry)
        self._retries = Counter("warden_upstream_retries",
                                "Requests moved to another backend before anything was sent",
                                ["backend"], registry=self.registry)
        self._ttft = Histogram("warden_time_to_first_token_seconds",
                               "From request received to the first SSE event",
                               buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._duration = Histogram("warden_request_duration_seconds",
                                   "From request received to the end of the response",
                                   ["endpoint"], buckets=_LATENCY_BUCKETS,
                                   registry=self.registry)
        self.registry.register(_BackendCollector(backends, clock))
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *labels: str):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request_done(self, endpoint: str, status: int, duration: float) -> None:
        self._child(self._requests, endpoint, str(status)).inc()
        self._child(self._duration, endpoint).observe(duration)

    def stream_done(self, verdict: str, ttft: float | None) -> None:
        self._child(self._verdicts, verdict).inc()
        if ttft is not None:
            self._ttft.observe(ttft)

    def retried(self, backend: str) -> None:
        self._child(self._retries, backend).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
