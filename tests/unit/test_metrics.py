"""GatewayMetrics' per-request counting (the arithmetic and the label bounds), read back through
the Prometheus text it renders. (The live output through promtool, and the families a running
gateway exports: tests/integration/test_observability.py.)"""

from __future__ import annotations

import bisect
import time

from prometheus_client.parser import text_string_to_metric_families

from warden.config.schema import Settings
from warden.exchange import Exchange
from warden.fleet.registry import BackendRegistry
from warden.observe.metrics import (
    LATENCY_BUCKETS,
    QUEUE_BUCKETS,
    TOKEN_BUCKETS,
    GatewayMetrics,
    bucket_of,
)

SETTINGS = Settings.model_validate(
    {"backends": [{"name": "b1", "url": "http://h:1", "models": ["m"]}]})


def exchange(model: str | None = "m", *, stream: bool = False, tenant: str | None = None,
             sent: bool = True, usage: dict | None = None, events: int = 0,
             ttft: float | None = None, verdict: str | None = "complete") -> Exchange:
    e = Exchange(b"id", "/v1/chat/completions", "127.0.0.1", 100.0)
    e.model, e.stream, e.tenant, e.usage, e.events, e.ttft = model, stream, tenant, usage, \
        events, ttft
    e.status, e.ended_at = 200, 102.0
    if sent:
        e.backend, e.sent_at, e.verdict = "b1", 100.004, verdict
    return e


def samples(metrics: GatewayMetrics) -> dict[tuple, float]:
    """(sample name, sorted label items) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            for s in family.samples}


def fresh() -> GatewayMetrics:
    return GatewayMetrics(BackendRegistry(SETTINGS), time.monotonic)


def test_a_complete_stream_observes_its_mean_time_per_output_token():
    metrics = fresh()
    # First event 0.5 s after arrival, end 2 s after: 1.5 s for the 30 tokens after the first.
    metrics.ended(exchange(stream=True, ttft=0.5, events=40,
                           usage={"prompt_tokens": 7, "completion_tokens": 31}))
    # Without usage: its events less the first and [DONE] (16 - 2 = 14 gaps after the first).
    metrics.ended(exchange(stream=True, ttft=0.6, events=16))
    # Cut short: a TTFT, no time per token.
    metrics.ended(exchange(stream=True, ttft=0.5, events=40, verdict="client_abort"))
    got = samples(metrics)
    model = (("model", "m"),)
    assert got["warden_time_per_output_token_seconds_count", model] == 2
    assert abs(got["warden_time_per_output_token_seconds_sum", model]
               - (1.5 / 30 + 1.4 / 14)) < 1e-9
    assert got["warden_time_to_first_token_seconds_count", model] == 3
    assert got["warden_request_queue_seconds_count", model] == 3
    assert abs(got["warden_request_queue_seconds_sum", model] - 3 * 0.004) < 1e-9
    assert got["warden_stream_verdicts_total", (("verdict", "client_abort"),)] == 1


def test_tokens_by_model_and_tenant():
    metrics = fresh()
    metrics.ended(exchange(usage={"prompt_tokens": 10, "completion_tokens": 3}))
    metrics.ended(exchange(tenant="t", usage={"prompt_tokens": 20, "completion_tokens": 5}))
    metrics.ended(exchange(tenant="t", usage={"prompt_tokens": "x"}))  # (a backend's oddity)
    got = samples(metrics)
    assert got["warden_prompt_tokens_total", (("model", "m"), ("tenant", "none"))] == 10
    assert got["warden_prompt_tokens_total", (("model", "m"), ("tenant", "t"))] == 20
    assert got["warden_completion_tokens_total", (("model", "m"), ("tenant", "t"))] == 5
    assert got["warden_tenant_requests_total",
               (("model", "m"), ("status", "200"), ("tenant", "t"))] == 2


def test_labels_stay_within_the_config():
    metrics = fresh()
    for n in range(50):
        metrics.ended(exchange(f"client-made-{n}", sent=False, verdict=None))
    metrics.ended(exchange(None, sent=False))
    got = samples(metrics)
    never_sent = (("backend", "none"), ("endpoint", "/v1/chat/completions"),
                  ("model", "other"), ("status", "200"), ("verdict", "none"))
    assert got["warden_requests_total", never_sent] == 51
    assert not any("client-made" in str(key) for key in got)
    assert metrics.answered("/v1/chat/completions", 200) == 51
    # (never sent: no queue time, no latency of a model)
    assert not any(name.startswith("warden_request_queue_seconds") for name, _ in got)


def test_a_value_falls_in_the_bucket_bisect_gives():
    """The histograms' compiled bucket search is `bisect_left`, bounds included."""
    for bounds in (LATENCY_BUCKETS, QUEUE_BUCKETS, TOKEN_BUCKETS):
        values = [*bounds, 0.0, -1.0, 1e9, float("inf")]
        values += [bound * factor for bound in bounds for factor in (0.999999, 1.000001)]
        assert [bucket_of(bounds, v) for v in values] == \
            [bisect.bisect_left(bounds, v) for v in values]
