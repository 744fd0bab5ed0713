"""The limits' metric families (read at scrape time from the limiter's state). Refusals are
counted with every answer, as `warden_requests_total{status="429"}` (and 503 when the store is
down and the fail mode closed)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def limits_families(state: dict) -> Iterable[Metric]:
    yield GaugeMetricFamily("warden_limits_store_up", "Whether the limits' store answers "
                            "(1 for the memory store; 0: this gateway admits by its fail "
                            "mode beyond what it already leased)",
                            value=1 if state.get("up", True) else 0)
    yield CounterMetricFamily("warden_limits_store_failures", "Calls to the limits' store "
                              "that failed or timed out", value=_count(state, "failures"))
    yield CounterMetricFamily("warden_limits_admitted_unchecked", "Requests admitted while the "
                              "store was down (fail_mode open), charged once it is back",
                              value=_count(state, "admitted_unchecked"))
    yield CounterMetricFamily("warden_limits_refused_unavailable", "Requests refused because "
                              "the store was down (fail_mode closed)",
                              value=_count(state, "refused_unavailable"))


def _count(state: dict, name: str) -> int:
    value = state.get(name)
    return value if isinstance(value, int) else 0
