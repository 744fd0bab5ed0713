"""The settings of rate limits (warden/tenancy): the limits of one subject (an API key, a
tenant) and where the counters shared by the replicas live. Not part of `Settings` yet: the
auth stage that names the subjects wires them in.

What each store and mode guarantees is in docs/limits.md and warden/tenancy/leased.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from warden.config.spec import Duration, Spec


def _whole_number(value: object) -> object:
    """A count: an integer, or its digits (from ${ENV}); never a bool or a fraction (YAML's
    `yes` is true, and 2.5 requests a minute means nothing)."""
    if isinstance(value, bool | float):
        raise ValueError("must be a whole number")
    if isinstance(value, str) and not value.strip().isdigit():
        raise ValueError("must be a whole number")
    return value


Count = Annotated[int, BeforeValidator(_whole_number)]

# The largest budgets accepted: counters are integers in Redis and numbers in its Lua (exact
# below 2**53); a cost is counted in millionths of its unit.
MAX_BUDGET_TOKENS = 10**15
MAX_BUDGET_COST = 10**9
MAX_PRICE = 10**6        # per million tokens
MICROS = 1_000_000       # a cost budget is counted in millionths of its currency unit


class BudgetSpec(Spec):
    """What one subject may spend in a calendar day or month (UTC): `tokens`, or `cost` in
    the currency unit of `rate_limits.prices` (exactly one of the two). Reserved at
    admission, settled from the real usage (docs/limits.md)."""

    tokens: Count | None = Field(default=None, gt=0, le=MAX_BUDGET_TOKENS)
    cost: float | None = Field(default=None, gt=0, le=MAX_BUDGET_COST, allow_inf_nan=False)
    per: Literal["day", "month"]

    @model_validator(mode="after")
    def _one_kind(self) -> BudgetSpec:
        if (self.tokens is None) == (self.cost is None):
            raise ValueError("give exactly one of tokens, cost")
        if self.units < 1:
            raise ValueError("cost is counted in millionths of its unit: give at least "
                             "0.000001")
        return self

    @property
    def units(self) -> int:
        """The budget in what is counted: tokens, or millionths of the currency unit."""
        return self.tokens if self.tokens is not None else round((self.cost or 0) * MICROS)


class PriceSpec(Spec):
    """One model's price, in the budgets' currency unit per million tokens."""

    input: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)
    output: float = Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)


class LimitValues(Spec):
    """What one subject may do. Unset: no limit of that kind. Several subjects apply to one
    request (its key and the key's tenant): it must fit in each."""

    rpm: Count | None = Field(default=None, gt=0)             # requests a minute
    tpm: Count | None = Field(default=None, gt=0)             # tokens a minute (reserved)
    max_concurrent: Count | None = Field(default=None, gt=0)  # requests in flight at once
    budget: BudgetSpec | None = None                          # tokens or cost a day, a month


class RateLimitSpec(Spec):
    """Where the counters live and how exactly they hold across replicas."""

    # memory: this process only (one replica); redis: shared by every replica.
    store: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="warden:limits:", min_length=1)
    # leased: each replica admits from an allowance leased from Redis in the background (no
    # Redis call on the request path; overshoot bounded, see docs/limits.md); exact: one
    # Redis call per request, before it goes on (never over; costs a round-trip each).
    mode: Literal["leased", "exact"] = "leased"
    # The lease size rule: one lease takes this share of a subject's per-minute limit (and
    # of its max_concurrent, for a block of slots), at least 1. The leased mode's overshoot
    # is at most one lease per replica per window: pick about the overshoot you accept
    # divided by the replicas. Smaller: more Redis calls, and bursts refused sooner.
    lease_fraction: float = Field(default=0.02, gt=0, le=1)
    # Slots a replica holds (and exact mode's in-flight entries) expire this long after their
    # last renewal (every third of it): a dead replica's slots come back after this.
    slot_ttl: Duration = 30.0
    # With the store unreachable: open admits (and counts it); closed refuses (503) what the
    # replica's own allowance does not cover.
    fail_mode: Literal["open", "closed"] = "open"
    # One Redis operation, at most.
    timeout: Duration = 0.5
    # Tokens reserved for a request that says no max_tokens (with its prompt's estimate).
    default_max_tokens: Count = Field(default=1024, ge=0)
    # Requests a minute from one client address, keys or not (counted before the key is
    # looked at, so a client guessing keys is slowed); none: no such limit.
    per_ip_rpm: Count | None = Field(default=None, gt=0)
    # What a model costs, for cost budgets: model name or glob -> {input, output} per
    # million tokens (the first match in the order written; "*" prices every other model).
    # A request under a cost budget for a model with no price is refused (403).
    prices: dict[str, PriceSpec] = {}

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        """Parsed as the Redis client will parse it at start."""
        from redis.connection import parse_url

        try:
            parse_url(value)
        except ValueError as e:
            raise ValueError(f"not a Redis URL ({e}; e.g. redis://127.0.0.1:6379/0)") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RateLimitSpec:
        if self.mode == "exact" and self.store == "memory":
            raise ValueError("mode: exact needs store: redis (the memory store is exact "
                             "already: it has one replica)")
        if self.slot_ttl < 3 * self.timeout or self.slot_ttl < 1.0:
            raise ValueError(f"slot_ttl ({self.slot_ttl:g}s) must be at least 1s and 3 times "
                             f"timeout ({3 * self.timeout:g}s): it is renewed every third of "
                             "it, and a renewal may take a whole timeout")
        return self
