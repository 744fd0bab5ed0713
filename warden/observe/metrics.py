"""Every Prometheus metric the gateway exports, defined here (and, per backend, in
`backend_metrics`) and nowhere else.

The hot path only bumps plain Python numbers (no locks, no label lookups through
prometheus_client); a collector turns them into metric families at scrape time. Each gateway
owns its own `CollectorRegistry`, so tests can build many gateways in one process.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from warden.exchange import Exchange
from warden.fleet.registry import BackendRegistry
from warden.fleet.watch import Scraper
from warden.guard.guard import Guard
from warden.observe.backend_metrics import backend_families
from warden.observe.limits_metrics import limits_families
from warden.observe.quarantine_metrics import quarantine_families
from warden.record.postgres import PostgresSink
from warden.record.recorder import Recorder
from warden.routing.protocol import RoutingPolicy

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)


class Histogram:
    """Bucket counts for one label set; `observe` is a bisect and two additions."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class GatewayMetrics:
    """The gateway's own counters, exported at scrape time. A prometheus collector by its
    `collect` method (not by inheriting `Collector`: this class is compiled, warden.compiled)."""

    def __init__(self, backends: BackendRegistry, clock: Callable[[], float],
                 recorder: Recorder | None = None, scraper: Scraper | None = None,
                 guard: Guard | None = None, policy: RoutingPolicy | None = None,
                 limits: Callable[[], dict] | None = None):
        """`scraper`: whose staleness the per-backend gauges show; `guard`, `policy`: the
        running config's (`use` follows a reload); `limits`: the limiter's state (None: no
        limits)."""
        self._limits = limits
        self._backends = backends
        self._clock = clock
        self._recorder = recorder
        self.hears_started = False  # (an ExchangeListener that counts at the end only)
        self.guard = guard
        self.scraper = scraper
        self.policy = policy
        # Config reloads by result ("ok", "failed"), and when the running config was loaded.
        self.reloads: defaultdict[str, int] = defaultdict(int)
        self.config_loaded_at = 0.0  # time.time()
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.tenant_requests: defaultdict[tuple[str, int], int] = defaultdict(int)
        self.verdicts: defaultdict[str, int] = defaultdict(int)
        self.retries: defaultdict[str, int] = defaultdict(int)
        self.ttft = Histogram()
        self.durations: defaultdict[str, Histogram] = defaultdict(Histogram)
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]  # (a collector by `collect`)

    def use(self, backends: BackendRegistry, guard: Guard | None,
            policy: RoutingPolicy) -> None:
        """Export these (a config reload replaced them)."""
        self._backends = backends
        self.guard = guard
        self.policy = policy

    # -- the hot path ----------------------------------------------------------------------

    # An ExchangeListener (warden.exchange).

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        """Called exactly once per request, when it has ended (answered or abandoned)."""
        endpoint = exchange.endpoint
        self.requests[endpoint, exchange.status] += 1
        # Histogram.observe, inlined: this runs per request.
        duration = exchange.ended_at - exchange.received_at
        histogram = self.durations[endpoint]
        histogram.counts[bisect.bisect_left(histogram.buckets, duration)] += 1
        histogram.sum += duration
        tenant = exchange.tenant
        if tenant is not None:  # (bounded: a key's tenant is one the config names)
            self.tenant_requests[tenant, exchange.status] += 1
        if exchange.stream and exchange.verdict is not None:
            self.verdicts[exchange.verdict] += 1
            if exchange.ttft is not None:
                self.ttft.observe(exchange.ttft)

    def retried(self, backend: str) -> None:
        self.retries[backend] += 1

    # -- scrape time -----------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily("warden_requests", "Requests answered, by endpoint "
                                       "and status", labels=["endpoint", "status"])
        for (endpoint, status), n in sorted(self.requests.items()):
            requests.add_metric([endpoint, str(status)], n)
        yield requests
        tenants = CounterMetricFamily("warden_tenant_requests", "Requests answered, by the "
                                      "API key's tenant and status (auth on)",
                                      labels=["tenant", "status"])
        for (tenant, status), n in sorted(self.tenant_requests.items()):
            tenants.add_metric([tenant, str(status)], n)
        yield tenants
        verdicts = CounterMetricFamily("warden_stream_verdicts", "How streams ended",
                                       labels=["verdict"])
        for verdict, n in sorted(self.verdicts.items()):
            verdicts.add_metric([verdict], n)
        yield verdicts
        retries = CounterMetricFamily("warden_upstream_retries", "Requests moved to another "
                                      "backend before anything was sent", labels=["backend"])
        for backend, n in sorted(self.retries.items()):
            retries.add_metric([backend], n)
        yield retries
        ttft = HistogramMetricFamily("warden_time_to_first_token_seconds",
                                     "From request received to the first SSE event")
        ttft.add_metric([], self.ttft.cumulative(), self.ttft.sum)
        yield ttft
        durations = HistogramMetricFamily("warden_request_duration_seconds", "From request "
                                          "received to the end of the response",
                                          labels=["endpoint"])
        for endpoint, histogram in sorted(self.durations.items()):
            durations.add_metric([endpoint], histogram.cumulative(), histogram.sum)
        yield durations
        yield from self._backend_gauges()
        if self._limits is not None:
            yield from limits_families(self._limits())
        reloads = CounterMetricFamily("warden_config_reloads", "Config reloads (SIGHUP or a "
                                      "changed file), by result", labels=["result"])
        for result in ("ok", "failed"):
            reloads.add_metric([result], self.reloads[result])
        yield reloads
        yield GaugeMetricFamily("warden_config_loaded_timestamp_seconds", "When the running "
                                "config was loaded (Unix time)", value=self.config_loaded_at)
        if self._recorder is not None:
            yield from self._recorder_metrics(self._recorder)
        if self.guard is not None:
            decisions = CounterMetricFamily("warden_guard_decisions", "Requests a guard rule "
                                            "matched, by rule, action and mode (enforce or "
                                            "dry_run)", labels=["rule", "action", "mode"])
            for (rule, action, mode), n in sorted(self.guard.decisions.items()):
                decisions.add_metric([rule, action, mode], n)
            yield decisions
            if self.guard.probation is not None:
                yield from quarantine_families(self.guard.probation)

    def _backend_gauges(self) -> Iterable[Metric]:
        return backend_families(self._backends, self._clock(), self.scraper, self.policy)

    @staticmethod
    def _recorder_metrics(recorder: Recorder) -> Iterable[Metric]:
        written = CounterMetricFamily("warden_recorder_records", "Audit records handed to "
                                      "the flight recorder's writer and written (or lost)")
        written.add_metric([], recorder.written)
        yield written
        dropped = CounterMetricFamily("warden_recorder_dropped", "Audit records lost, by "
                                      "cause", labels=["cause"])
        writer = recorder.file_sink.writer
        dropped.add_metric(["queue_full"], recorder.dropped)
        dropped.add_metric(["disk_cap"], writer.refused)
        dropped.add_metric(["disk_full"], writer.disk_full)
        dropped.add_metric(["write_error"], writer.failed)
        dropped.add_metric(["render_error"], recorder.unrendered)
        yield dropped
        omitted = CounterMetricFamily("warden_recorder_bodies_omitted", "Request bodies left "
                                      "out of their records because free disk was low")
        omitted.add_metric([], recorder.bodies_omitted)
        yield omitted
        files = recorder.files
        size = GaugeMetricFamily("warden_recorder_disk_bytes", "Bytes of the recorder's "
                                 "files on disk (capped by recorder.max_total_size)")
        size.add_metric([], files.total_bytes if files is not None else 0)
        yield size
        queued = GaugeMetricFamily("warden_recorder_queued", "Records waiting for the writer")
        queued.add_metric([], recorder.queued)
        yield queued
        for sink in recorder.sinks:
            if isinstance(sink, PostgresSink):
                yield from _postgres_metrics(sink)


def _postgres_metrics(sink: PostgresSink) -> Iterable[Metric]:
    outcomes = CounterMetricFamily("warden_recorder_postgres_records", "Records sent to the "
                                   "PostgreSQL sink, by outcome", labels=["outcome"])
    outcomes.add_metric(["written"], sink.written)
    outcomes.add_metric(["failed"], sink.failed)
    outcomes.add_metric(["queue_full"], sink.dropped)
    outcomes.add_metric(["shutdown"], sink.abandoned)
    yield outcomes
    yield GaugeMetricFamily("warden_recorder_postgres_queued_bytes", "Bytes of records waiting "
                            "for PostgreSQL (bounded by recorder.postgres.queue_bytes)",
                            value=sink.queued_bytes)
