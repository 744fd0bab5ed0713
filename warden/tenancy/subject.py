"""One subject's limits as one replica keeps them: the requests and tokens buckets of the
current window and the concurrency slots (tenancy/ledger.py), and the decision for one
request on all three."""

from __future__ import annotations

from warden.config.limits_schema import LimitValues
from warden.tenancy.answers import BUDGET, CONCURRENT, RPM, TPM, Quota
from warden.tenancy.budget import period_bounds, period_of
from warden.tenancy.ledger import COVERED, CREDIT, DOWN, Bucket, Slots, block_of


class SubjectState:
    """`whole`: the memory store (the whole limit held from the start, nothing to ask)."""

    __slots__ = ("budget", "by_cost", "fraction", "limits", "name", "period", "period_end",
                 "period_start", "requests", "slots", "tokens", "ttl", "wanted", "whole",
                 "window")

    def __init__(self, name: str, limits: LimitValues, window: int, fraction: float,
                 ttl: float, whole: bool, now: float = 0.0):
        self.name = name
        self.limits = limits
        self.window = window
        self.fraction = fraction
        self.ttl = ttl
        self.whole = whole
        self.wanted = False      # in the background loop's queue
        self.requests = self._bucket(limits.rpm)
        self.tokens = self._bucket(limits.tpm)
        most = limits.max_concurrent
        self.slots: Slots | None = None if most is None else \
            Slots(most, block_of(most, fraction), ttl, whole=whole)
        self.budget: Bucket | None = None
        self.by_cost = False      # the budget counts cost (else tokens)
        self.period = -1
        self.period_start = self.period_end = 0.0
        self.roll_budget(now)

    def roll_budget(self, now: float) -> None:
        """The budget of the period `now` is in: a fresh bucket (what the last period left,
        or owed, lapses with it)."""
        budget = self.limits.budget
        if budget is None:
            self.budget = None
            return
        self.by_cost = budget.cost is not None
        self.period = period_of(budget.per, now)
        self.period_start, self.period_end = period_bounds(budget.per, self.period)
        self.budget = self._bucket(budget.units)

    def charge(self, tokens: int, cost: int) -> int:
        return cost if self.by_cost else tokens

    def _bucket(self, limit: int | None) -> Bucket | None:
        if limit is None:
            return None
        return Bucket(limit, block_of(limit, self.fraction), whole=self.whole)

    def roll(self, window: int) -> None:
        """A new window: fresh buckets (what was unspent, or owed, in the last one lapses)."""
        self.window = window
        self.requests = self._bucket(self.limits.rpm)
        self.tokens = self._bucket(self.limits.tpm)

    def relimit(self, limits: LimitValues, now: float) -> None:
        """New limits for the subject (a reload, a tenant's change), from now on."""
        old, self.limits = self.limits, limits
        if old.budget != limits.budget:
            if old.budget is None or limits.budget is None or self.budget is None or \
                    old.budget.per != limits.budget.per or \
                    (old.budget.cost is None) != (limits.budget.cost is None):
                self.roll_budget(now)    # another kind of budget: counted afresh
            else:
                units = limits.budget.units
                self.budget.relimit(units, block_of(units, self.fraction), self.whole)
        self.requests = self._rebucket(self.requests, old.rpm, limits.rpm)
        self.tokens = self._rebucket(self.tokens, old.tpm, limits.tpm)
        most = limits.max_concurrent
        if most is None:
            self.slots = None   # its tickets free a detached object
        elif self.slots is None:
            self.slots = Slots(most, block_of(most, self.fraction), self.ttl, whole=self.whole)
        else:
            self.slots.relimit(most, block_of(most, self.fraction), self.whole)

    def _rebucket(self, bucket: Bucket | None, old: int | None,
                  new: int | None) -> Bucket | None:
        if new is None or bucket is None:
            return self._bucket(new)
        if new != old:
            bucket.relimit(new, block_of(new, self.fraction), self.whole)
        return bucket

    def decide(self, tokens: int, cost: int, now: float, up: bool) -> tuple[str, int]:
        """The first limit that refuses the request and why (ledger's outcomes), else
        ("", DOWN) if the store is needed and down, else ("", COVERED). The budget first:
        spent, it is the answer that tells the client to stop."""
        down = False
        if self.budget is not None:
            outcome = self.budget.decide(cost if self.by_cost else tokens, up)
            if outcome == DOWN:
                down = True
            elif outcome != COVERED and outcome != CREDIT:
                return BUDGET, outcome
        if self.requests is not None:
            outcome = self.requests.decide(1, up)
            if outcome == DOWN:
                down = True
            elif outcome != COVERED and outcome != CREDIT:
                return RPM, outcome
        if self.tokens is not None:
            outcome = self.tokens.decide(tokens, up)
            if outcome == DOWN:
                down = True
            elif outcome != COVERED and outcome != CREDIT:
                return TPM, outcome
        if self.slots is not None:
            outcome = self.slots.decide(now, up)
            if outcome == DOWN:
                down = True
            elif outcome != COVERED and outcome != CREDIT:
                return CONCURRENT, outcome
        return "", DOWN if down else COVERED

    def take(self, tokens: int, cost: int, now: float) -> bool:
        """Takes the request; True if the store should be asked now (a lease or slots)."""
        ask = False
        if self.budget is not None:
            self.budget.take(cost if self.by_cost else tokens)
            ask = self.budget.ask() > 0
        if self.requests is not None:
            self.requests.take(1)
            ask = ask or self.requests.ask() > 0
        if self.tokens is not None:
            self.tokens.take(tokens)
            ask = ask or self.tokens.ask() > 0
        if self.slots is not None:
            self.slots.take(now)
            ask = ask or self.slots.wants(now) >= 0
        return ask and not self.whole

    def count(self, quota: Quota) -> None:
        requests = self.requests
        if requests is not None:
            quota.count(RPM, requests.limit, requests.remaining(), requests.limit_text)
        tokens = self.tokens
        if tokens is not None:
            quota.count(TPM, tokens.limit, tokens.remaining(), tokens.limit_text)

    def idle(self, window: int, now: float) -> bool:
        """Nothing to keep: an old window, no budget in its period (what it spent, or holds
        leased, lives as long as the period), no slot in use, nor held from the store or
        asked for (the memory store's slots are all held, always)."""
        slots = self.slots
        if self.window >= window or self.wanted or \
                (self.budget is not None and now < self.period_end):
            return False
        return slots is None or (slots.in_use == 0 and (
            self.whole or (slots.held == 0 and not slots.asking)))
