"""Every Prometheus metric the gateway exports, defined here and in its siblings (the request
families in `request_metrics`, per backend in `backend_metrics`, ...) and nowhere else.

The hot path only bumps plain Python numbers (no locks, no label lookups through
prometheus_client); a collector turns them into metric families at scrape time. Each gateway
owns its own `CollectorRegistry`, so tests can build many gateways in one process.

Label cardinality is bounded by the config, never by clients: a model is named only when
the fleet serves it (configured or discovered; any other name counts as `other`), backends
are the configured ones, tenants the configured ones, statuses and verdicts are few.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warden.exchange import Exchange, NativeListener
from warden.fleet.registry import BackendRegistry
from warden.fleet.watch import Scraper
from warden.guard.guard import Guard
from warden.observe.backend_metrics import backend_families
from warden.observe.limits_metrics import limits_families
from warden.observe.quarantine_metrics import quarantine_families
from warden.observe.recorder_metrics import recorder_families
from warden.observe.request_metrics import incident_families, request_families
from warden.record.recorder import Recorder
from warden.routing.protocol import RoutingPolicy

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)
# Between a stream's tokens: ms to a second (vLLM's own start at 10 ms).
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                 0.5, 1.0, 2.5)
# The gateway's own wait before a request goes out: usually well under a millisecond.
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def bucket_of(bounds: tuple[float, ...], value: float) -> int:
    """`bisect.bisect_left(bounds, value)`, as a loop: compiled, a loop over ~16 floats costs
    a few hundred instructions, where the builtin's call costs ~800 (its arguments parsed)."""
    at = 0
    for bound in bounds:
        if value <= bound:
            return at
        at += 1
    return at


class Histogram:
    """Bucket counts for one label set; `observe` is a bucket's search and two additions."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bucket_of(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Series:
    """The numbers of one (endpoint, model). Found per request by two lookups keyed by
    strings, whose hashes Python caches: no tuple built and hashed twice, as a
    `defaultdict[tuple]` bump costs."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int, str], int] = {}  # (backend, status, verdict)
        self.duration = Histogram(LATENCY_BUCKETS)
        self.queue = Histogram(QUEUE_BUCKETS)
        self.ttft = Histogram(LATENCY_BUCKETS)
        self.tpot = Histogram(TOKEN_BUCKETS)
        # Tokens of the requests without a tenant (those with one: by tenant, elsewhere).
        self.prompt_tokens = 0
        self.completion_tokens = 0


class GatewayMetrics(NativeListener):
    """The gateway's own counters, exported at scrape time. A prometheus collector by its
    `collect` method (not by inheriting `Collector`: this class is compiled, warden.compiled)."""

    OTHER: Final = "other"  # the model label of a model the fleet does not serve
    NONE: Final = "none"    # no backend (never sent), no verdict, no tenant

    def __init__(self, backends: BackendRegistry, clock: Callable[[], float],
                 recorder: Recorder | None = None, scraper: Scraper | None = None,
                 guard: Guard | None = None, policy: RoutingPolicy | None = None,
                 limits: Callable[[], dict] | None = None,
                 incidents: Callable[[], tuple[dict[str, int], int]] | None = None):
        """`scraper`: whose staleness the per-backend gauges show; `guard`, `policy`: the
        running config's (`use` follows a reload); `limits`: the limiter's state (None: no
        limits); `incidents`: incidents opened by backend, and open now."""
        self._limits = limits
        self._incidents = incidents
        self._backends = backends
        self._clock = clock
        self._recorder = recorder
        self.hears_started = False  # (an ExchangeListener that counts at the end only)
        self.ended_total = 0  # requests ended (the loop probe's sign of traffic)
        self.guard = guard
        self.scraper = scraper
        self.policy = policy
        # Config reloads by result ("ok", "failed"), and when the running config was loaded.
        self.reloads: defaultdict[str, int] = defaultdict(int)
        self.config_loaded_at = 0.0  # time.time()
        self.series: dict[str, dict[str, Series]] = {}  # endpoint -> model -> its numbers
        # (tenant, model, status)
        self.tenant_requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.verdicts: defaultdict[str, int] = defaultdict(int)
        self.retries: defaultdict[str, int] = defaultdict(int)
        # (model, tenant) -> tokens, as the backends' usage said (without a tenant: on the
        # series)
        self.prompt_tokens: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.completion_tokens: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]  # (a collector by `collect`)

    def use(self, backends: BackendRegistry, guard: Guard | None,
            policy: RoutingPolicy) -> None:
        """Export these (a config reload replaced them)."""
        self._backends = backends
        self.guard = guard
        self.policy = policy

    def answered(self, endpoint: str, status: int) -> int:
        """Requests answered at `endpoint` with `status`, whatever their other labels."""
        return sum(n for series in self.series.get(endpoint, {}).values()
                   for (_, answered, _), n in series.answers.items() if answered == status)

    # -- the hot path ----------------------------------------------------------------------

    # An ExchangeListener (warden.exchange). It is told last of the listeners: a plain
    # response's usage is on the exchange by then when the recorder or the limits read it.

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        """Called exactly once per request, when it has ended (answered or abandoned)."""
        self.ended_total += 1
        model = exchange.model
        if model is None or model not in self._backends.serving:
            model = GatewayMetrics.OTHER
        endpoint = exchange.endpoint
        models = self.series.get(endpoint)
        series = models.get(model) if models is not None else None
        if series is None:
            series = self._new_series(endpoint, model)
        status = exchange.status
        verdict = exchange.verdict
        key = (exchange.backend or GatewayMetrics.NONE, status, verdict or GatewayMetrics.NONE)
        answers = series.answers
        answers[key] = answers.get(key, 0) + 1
        # Histogram.observe, inlined: this runs per request.
        duration = exchange.ended_at - exchange.received_at
        histogram = series.duration
        histogram.counts[bucket_of(histogram.buckets, duration)] += 1
        histogram.sum += duration
        tenant = exchange.tenant
        if tenant is not None:  # (bounded: a key's tenant is one the config names)
            self.tenant_requests[tenant, model, status] += 1
        ended_stream = verdict if exchange.stream else None  # (None: not a stream, or unsent)
        if ended_stream is not None:
            self.verdicts[ended_stream] += 1
        if not exchange.sent_at:
            return
        histogram = series.queue
        waited = exchange.sent_at - exchange.received_at
        histogram.counts[bucket_of(histogram.buckets, waited)] += 1
        histogram.sum += waited
        usage = exchange.usage
        completion = 0
        if usage is not None:
            prompt = usage.get("prompt_tokens")
            value = usage.get("completion_tokens")
            if type(value) is int:
                completion = value
            if type(prompt) is not int:
                prompt = 0
            if tenant is None:
                series.prompt_tokens += prompt
                series.completion_tokens += completion
            else:
                self.prompt_tokens[model, tenant] += prompt
                self.completion_tokens[model, tenant] += completion
        if ended_stream is not None:
            ttft = exchange.ttft
            if ttft is not None:
                series.ttft.observe(ttft)
                if ended_stream == "complete":
                    self._observe_tpot(series, exchange, ttft, completion)

    def _new_series(self, endpoint: str, model: str) -> Series:
        series = Series()
        self.series.setdefault(endpoint, {})[model] = series
        return series

    @staticmethod
    def _observe_tpot(series: Series, exchange: Exchange, ttft: float,
                      completion: int) -> None:
        """A whole stream's mean time per output token after the first: the time from its
        first event to its end over the tokens after the first (the usage's count; without
        usage, its events less the first and `[DONE]`: vLLM sends about a token an event).
        One observation per stream, at its end, instead of a clock read per token."""
        after_first = completion - 1 if completion else exchange.events - 2
        if after_first > 0:
            series.tpot.observe((exchange.ended_at - exchange.received_at - ttft) / after_first)

    def retried(self, backend: str) -> None:
        self.retries[backend] += 1

    # -- scrape time -----------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        yield from request_families(self)
        yield from backend_families(self._backends, self._clock(), self.scraper, self.policy)
        if self._limits is not None:
            yield from limits_families(self._limits())
        if self._incidents is not None:
            opened, open_now = self._incidents()
            yield from incident_families(opened, open_now,
                                         [backend.name for backend in self._backends])
        reloads = CounterMetricFamily("warden_config_reloads", "Config reloads (SIGHUP or a "
                                      "changed file), by result", labels=["result"])
        for result in ("ok", "failed"):
            reloads.add_metric([result], self.reloads[result])
        yield reloads
        yield GaugeMetricFamily("warden_config_loaded_timestamp_seconds", "When the running "
                                "config was loaded (Unix time)", value=self.config_loaded_at)
        if self._recorder is not None:
            yield from recorder_families(self._recorder)
        if self.guard is not None:
            decisions = CounterMetricFamily("warden_guard_decisions", "Requests a guard rule "
                                            "matched, by rule, action and mode (enforce or "
                                            "dry_run)", labels=["rule", "action", "mode"])
            for (rule, action, mode), n in sorted(self.guard.decisions.items()):
                decisions.add_metric([rule, action, mode], n)
            yield decisions
            if self.guard.probation is not None:
                yield from quarantine_families(self.guard.probation)
