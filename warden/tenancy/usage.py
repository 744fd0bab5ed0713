"""Budgets as the admin API and the metrics show them: each subject's budget against what is
taken of it in the current period.

`usage` reads the shared counters (one Redis round trip for all the subjects asked about;
the memory store: what this process holds). In the leased mode a counter holds what the
replicas leased: spent, reserved by requests in flight, and the allowance replicas hold
unspent (at most 1.5 leases each), so `spent` may run ahead of the tokens used by that much;
in the exact mode it is what was spent and reserved. With Redis unreachable the answer is
this replica's own last view, marked `"source": "replica"`.

One entry (`entry`):

    {"subject": "tenant:acme", "kind": "tokens" | "cost", "per": "day" | "month",
     "limit": 1000000, "spent": 5230, "remaining": 994770,
     "period_start": "2026-12-05T00:00:00Z", "resets_at": "2026-12-06T00:00:00Z",
     "source": "store" | "replica"}

A cost budget's `limit`, `spent` and `remaining` are in the prices' currency unit (floats);
a token budget's in tokens."""

from __future__ import annotations

import contextlib

from warden.config.auth_schema import AuthSpec
from warden.config.limits_schema import MICROS, BudgetSpec
from warden.tenancy.budget import iso, period_bounds, period_of
from warden.tenancy.native import Subjects
from warden.tenancy.redis_store import RedisLimits


def entry(name: str, budget: BudgetSpec, now: float, taken: int, source: str) -> dict:
    start, end = period_bounds(budget.per, period_of(budget.per, now))
    units = budget.units
    left = max(0, units - taken)
    if budget.cost is not None:
        limit: float = units / MICROS
        spent: float = taken / MICROS
        remaining: float = left / MICROS
    else:
        limit, spent, remaining = units, taken, left
    return {"subject": name, "kind": "cost" if budget.cost is not None else "tokens",
            "per": budget.per, "limit": limit, "spent": spent, "remaining": remaining,
            "period_start": iso(start), "resets_at": iso(end), "source": source}


async def usage(store: RedisLimits | None, seen: dict[str, tuple[int, int]],
                subjects: Subjects, now: float) -> list[dict]:
    """The entries of the subjects that have a budget, in order. `seen`: the limiter's own
    view (subject -> (period, taken)), used without a store or when it cannot be read."""
    budgeted = [(name, limits.budget) for name, limits in subjects
                if limits.budget is not None]
    counts: list[int] | None = None
    if store is not None and budgeted:
        with contextlib.suppress(Exception):   # (unreachable: this replica's view, marked)
            counts = await store.read_budgets([
                store.budget_key(name, budget.per, period_of(budget.per, now))
                for name, budget in budgeted])
    entries = []
    for i, (name, budget) in enumerate(budgeted):
        if counts is not None:
            entries.append(entry(name, budget, now, counts[i], "store"))
            continue
        period, taken = seen.get(name, (-1, 0))
        current = period == period_of(budget.per, now)
        entries.append(entry(name, budget, now, taken if current else 0,
                             "store" if store is None else "replica"))
    return entries


def tenant_budgets(seen: dict[str, tuple[int, int]], auth: AuthSpec,
                   now: float) -> list[dict]:
    """The metrics' rows: every configured tenant with a budget (bounded: the config's
    tenants only), as this replica last saw it."""
    rows = []
    for name, tenant in auth.tenants.items():
        budget = tenant.limits.budget if tenant.limits is not None else None
        if budget is None:
            continue
        period, taken = seen.get("tenant:" + name, (-1, 0))
        rows.append(entry(name, budget, now,
                          taken if period == period_of(budget.per, now) else 0, "replica"))
    return rows
