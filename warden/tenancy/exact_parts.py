"""The exact mode's pieces (tenancy/exact.py): its ticket, a request waiting for its batch,
and the arithmetic of its keys' lifetimes."""

from __future__ import annotations

import math
from asyncio import Future

from warden.config.limits_schema import BudgetSpec
from warden.tenancy.answers import Quota, Refusal, Ticket, budget_spent
from warden.tenancy.budget import KEEP_AFTER, iso, period_bounds, period_of
from warden.tenancy.ledger import WINDOW, window_end, window_of
from warden.tenancy.native import Subjects

Answer = Ticket | Refusal


class ExactTicket(Ticket):
    __slots__ = ("busy", "ident", "limited", "names", "renewed_at")

    def __init__(self, limited: Subjects, names: tuple[str, ...], tokens: int, window: int,
                 quota: Quota, ident: str, renewed_at: float, checked: bool = True,
                 cost: int = 0):
        super().__init__(tokens, window, quota, checked, cost)
        self.names = names
        self.limited = limited    # the subjects with a limit (the others are not in Redis)
        self.ident = ident
        self.busy = any(limits.max_concurrent for _, limits in limited)
        self.renewed_at = renewed_at   # the timer's (only tickets in `_live` renew)


class Pending:
    __slots__ = ("cost", "future", "ident", "limited", "names", "now", "tokens", "window")

    def __init__(self, future: Future[Answer], limited: Subjects, names: tuple[str, ...],
                 tokens: int, now: float, ident: str, cost: int):
        self.future, self.limited, self.names = future, limited, names
        self.tokens, self.now, self.window, self.ident = tokens, now, window_of(now), ident
        self.cost = cost


def spent_refusal(name: str, budget: BudgetSpec, now: float, quota: Quota) -> Refusal:
    end = period_bounds(budget.per, period_of(budget.per, now))[1]
    return budget_spent(name, budget.per, budget.units, budget.cost is not None, iso(end),
                        quota)


def budget_ttl(per: str, now: float) -> int:
    """A budget's key lives until a day after its period ends (late settles find it)."""
    end = period_bounds(per, period_of(per, now))[1]
    return max(1000, math.ceil((end - now + KEEP_AFTER) * 1000))


def window_ttl(now: float) -> int:
    """A window's key lives until a minute after its window ends."""
    return max(1000, math.ceil((window_end(window_of(now)) - now + WINDOW) * 1000))
