"""The limits' metric families (read at scrape time from the limiter's state). Refusals are
counted with every answer, as `warden_requests_total{status="429"}` (and 503 when the store is
down and the fail mode closed), and by what refused them: `warden_limit_refusals_total{limit,
subject}`. The budgets of the configured tenants (only those: bounded) as this replica last
saw them: `warden_budget_spent`, `warden_budget_limit` (tenancy/usage.py)."""

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
    yield from refusal_families(state)


# Always shown (at 0 until counted), so that rate() and alerts see the series from the start.
REFUSAL_KINDS = [(limit, subject) for subject in ("key", "tenant")
                 for limit in ("rpm", "tpm", "concurrency", "budget")] + [("rpm", "ip")]


def refusal_families(state: dict) -> Iterable[Metric]:
    refusals = CounterMetricFamily("warden_limit_refusals", "Requests refused with 429 by a "
                                   "limit (rpm, tpm, concurrency, budget) of a subject (key, "
                                   "tenant, ip)", labels=["limit", "subject"])
    counted = state.get("refusals")
    counts: dict = counted if isinstance(counted, dict) else {}
    for kind in sorted({*REFUSAL_KINDS, *counts}):
        refusals.add_metric(list(kind), counts.get(kind, 0))
    yield refusals
    spent = GaugeMetricFamily("warden_budget_spent", "What a configured tenant took of its "
                              "budget this period (tokens, or the prices' currency unit), as "
                              "this gateway last saw it", labels=["tenant", "kind", "per"])
    limit = GaugeMetricFamily("warden_budget_limit", "A configured tenant's budget a period",
                              labels=["tenant", "kind", "per"])
    for row in state.get("budgets") or ():
        labels = [row["subject"], row["kind"], row["per"]]
        spent.add_metric(labels, row["spent"])
        limit.add_metric(labels, row["limit"])
    yield spent
    yield limit


def _count(state: dict, name: str) -> int:
    value = state.get(name)
    return value if isinstance(value, int) else 0
