"""The request families (counts, latencies, tokens) and the incidents', built at scrape time
from the plain numbers `GatewayMetrics` bumps per request."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

if TYPE_CHECKING:
    from warden.observe.metrics import GatewayMetrics, Histogram, Series


def request_families(m: GatewayMetrics) -> Iterable[Metric]:
    requests = CounterMetricFamily(
        "warden_requests", "Requests answered, by endpoint, model (`other`: one the fleet "
        "does not serve), backend (`none`: never sent), status (499: the client left before "
        "the answer began) and verdict (how it ended; `none`: never sent)",
        labels=["endpoint", "model", "backend", "status", "verdict"])
    for endpoint, model, series in _each(m):
        for (backend, status, verdict), n in sorted(series.answers.items()):
            requests.add_metric([endpoint, model, backend, str(status), verdict], n)
    yield requests
    tenants = CounterMetricFamily("warden_tenant_requests", "Requests answered, by the "
                                  "API key's tenant, model and status (auth on)",
                                  labels=["tenant", "model", "status"])
    for (tenant, model, status), n in sorted(m.tenant_requests.items()):
        tenants.add_metric([tenant, model, str(status)], n)
    yield tenants
    verdicts = CounterMetricFamily("warden_stream_verdicts", "How streams ended",
                                   labels=["verdict"])
    for verdict, n in sorted(m.verdicts.items()):
        verdicts.add_metric([verdict], n)
    yield verdicts
    retries = CounterMetricFamily("warden_upstream_retries", "Requests moved to another "
                                  "backend before anything was sent", labels=["backend"])
    for backend, n in sorted(m.retries.items()):
        retries.add_metric([backend], n)
    yield retries
    yield from _latencies(m)
    yield from _tokens(m)


def _each(m: GatewayMetrics) -> list[tuple[str, str, Series]]:
    return sorted(((endpoint, model, series) for endpoint, models in m.series.items()
                   for model, series in models.items()), key=lambda each: each[:2])


def _latencies(m: GatewayMetrics) -> Iterable[Metric]:
    ttft = HistogramMetricFamily("warden_time_to_first_token_seconds", "Streams: from the "
                                 "request received to its first SSE event", labels=["model"])
    tpot = HistogramMetricFamily("warden_time_per_output_token_seconds", "Complete streams: "
                                 "the mean time between tokens after the first (one "
                                 "observation per stream)", labels=["model"])
    queue = HistogramMetricFamily("warden_request_queue_seconds", "From the request received "
                                  "to its first byte written to a backend (admission, a wait "
                                  "for a quarantine probe or a media fetch, connecting, "
                                  "retries)", labels=["model"])
    durations = HistogramMetricFamily("warden_request_duration_seconds", "From request "
                                      "received to the end of the response",
                                      labels=["endpoint", "model"])
    by_model: dict[str, list[Series]] = {}
    for endpoint, model, series in _each(m):
        durations.add_metric([endpoint, model], series.duration.cumulative(),
                             series.duration.sum)
        by_model.setdefault(model, []).append(series)
    for model, each in sorted(by_model.items()):  # (summed over the endpoints)
        for family, attr in ((ttft, "ttft"), (tpot, "tpot"), (queue, "queue")):
            histograms = [getattr(series, attr) for series in each]
            if any(any(histogram.counts) for histogram in histograms):
                family.add_metric([model], *_summed(histograms))
    yield from (ttft, tpot, queue, durations)


def _summed(histograms: list[Histogram]) -> tuple[list[tuple[str, int]], float]:
    """Histograms of the same buckets, added: (cumulative buckets, sum)."""
    cumulative = [list(pairs) for pairs in zip(*(h.cumulative() for h in histograms),
                                               strict=True)]
    return ([(pairs[0][0], sum(n for _, n in pairs)) for pairs in cumulative],
            sum(h.sum for h in histograms))


def _tokens(m: GatewayMetrics) -> Iterable[Metric]:
    for name, doc, attr, by_tenant in (
            ("warden_prompt_tokens", "Prompt tokens", "prompt_tokens", m.prompt_tokens),
            ("warden_completion_tokens", "Completion tokens", "completion_tokens",
             m.completion_tokens)):
        family = CounterMetricFamily(name, f"{doc}, as the backends' usage reported them, by "
                                     "model and tenant (`none`: no API key's)",
                                     labels=["model", "tenant"])
        counts: dict[tuple[str, str], int] = {}
        for _, model, series in _each(m):
            if any(series.queue.counts):  # (some were sent)
                key = (model, "none")  # (GatewayMetrics.NONE)
                counts[key] = counts.get(key, 0) + getattr(series, attr)
        counts.update(by_tenant)
        for (model, tenant), n in sorted(counts.items()):
            family.add_metric([model, tenant], n)
        yield family


def incident_families(opened: dict[str, int], open_now: int,
                      backends: list[str]) -> Iterable[Metric]:
    """Every configured backend's count is exported, 0 included: an alert on its
    `increase` then sees the first incident (a series that starts at 1 shows no increase)."""
    incidents = CounterMetricFamily("warden_incidents", "Incidents opened (a backend that "
                                    "was serving died), by backend", labels=["backend"])
    for backend in sorted({*opened, *backends}):
        incidents.add_metric([backend], opened.get(backend, 0))
    yield incidents
    yield GaugeMetricFamily("warden_incidents_open", "Incidents still collecting their "
                            "suspects and signals", value=open_now)
