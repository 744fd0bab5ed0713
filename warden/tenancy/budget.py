"""Budgets' arithmetic, pure (time is an argument): calendar periods in UTC and what a request
costs under a model's price. The limiters keep a budget as one more bucket of the subject
(tenancy/subject.py), whose window is a period instead of a minute.

Periods: `day` is the UTC calendar day (00:00 to 24:00 UTC), `month` the UTC calendar month
(from the 1st at 00:00 UTC). A period is named by an integer: days since the epoch, or
year x 12 + month - 1. Every period starts on a whole minute, so the minute window a request
was admitted in names its period too (settle finds the period it reserved from).

Cost is counted in millionths of the prices' currency unit (`MICROS`): a price per million
tokens is then the cost of one token in those millionths, and the cost of a request is
ceil(prompt x input + output x output), rounded up once per request (at most one millionth
of the unit over)."""

from __future__ import annotations

import fnmatch
import math
import re
from datetime import UTC, datetime

from warden.config.limits_schema import BudgetSpec, PriceSpec

DAY = 86400.0
KEEP_AFTER = DAY   # a period's counter in Redis outlives its end by this (late settles)


def period_of(per: str, now: float) -> int:
    if per == "day":
        return int(now // DAY)
    moment = datetime.fromtimestamp(now, UTC)
    return moment.year * 12 + moment.month - 1


def period_bounds(per: str, period: int) -> tuple[float, float]:
    """The period's start and end (wall clock, seconds)."""
    if per == "day":
        return period * DAY, (period + 1) * DAY
    year, month = divmod(period, 12)
    after_year, after_month = divmod(period + 1, 12)
    return (datetime(year, month + 1, 1, tzinfo=UTC).timestamp(),
            datetime(after_year, after_month + 1, 1, tzinfo=UTC).timestamp())


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def charge(budget: BudgetSpec, tokens: int, cost: int) -> int:
    """What a request of `tokens` tokens costing `cost` takes from this budget."""
    return tokens if budget.tokens is not None else cost


def cost_of(price: tuple[float, float] | None, prompt: int, output: int) -> int:
    """In millionths of the currency unit (prices are per million tokens), rounded up."""
    if price is None:
        return 0
    return math.ceil(prompt * price[0] + output * price[1])


class Prices:
    """`rate_limits.prices`: a model's (input, output) price per million tokens, the first
    name or glob that matches in the order written; None: no price."""

    def __init__(self, prices: dict[str, PriceSpec]):
        self._rules = [(re.compile(fnmatch.translate(pattern)), (spec.input, spec.output))
                       for pattern, spec in prices.items()]
        self._seen: dict[str, tuple[float, float] | None] = {}  # bounded below

    def of(self, model: str) -> tuple[float, float] | None:
        if model in self._seen:
            return self._seen[model]
        found = next((price for rule, price in self._rules if rule.fullmatch(model)), None)
        if len(self._seen) < 1024:
            self._seen[model] = found
        return found
