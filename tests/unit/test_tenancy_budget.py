"""Budgets' arithmetic (UTC days and months, costs, prices), their settings (hostile values
refused clearly), and the memory limiter spending one with a fake clock across a day's and a
month's end."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from warden.config.limits_schema import LimitValues, PriceSpec, RateLimitSpec
from warden.config.schema import Settings
from warden.tenancy.answers import Refusal, Ticket
from warden.tenancy.budget import Prices, cost_of, iso, period_bounds, period_of
from warden.tenancy.limiter import build_limiter


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def budget(**spec: object) -> LimitValues:
    return LimitValues.model_validate({"budget": spec})


@pytest.mark.parametrize(("moment", "per", "start", "end"), [
    ("2026-12-05T23:59:59.999", "day", "2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z"),
    ("2026-12-06T00:00:00", "day", "2026-12-06T00:00:00Z", "2026-12-07T00:00:00Z"),
    ("2026-12-31T23:59:59", "month", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
    ("2027-01-01T00:00:00", "month", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z"),
    ("2028-02-29T12:00:00", "month", "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z"),
])
def test_periods_are_utc_calendar_days_and_months(moment, per, start, end):
    period = period_of(per, at(moment))
    begins, ends = period_bounds(per, period)
    assert (iso(begins), iso(ends)) == (start, end)
    assert period_of(per, begins) == period and period_of(per, ends) == period + 1
    assert begins % 60 == 0   # (a minute window names its period)


def test_a_cost_is_millionths_rounded_up_once_per_request():
    assert cost_of((0.60, 0.80), 1000, 500) == 1000   # 600 + 400 millionths
    assert cost_of((0.15, 0.15), 1, 0) == 1            # 0.15 rounds up to 1
    assert cost_of(None, 10**6, 10**6) == 0


def test_prices_the_first_match_in_the_order_written():
    prices = Prices({"llama-3.1-70b*": PriceSpec(input=0.6, output=0.8),
                     "llama-*": PriceSpec(input=0.1, output=0.2),
                     "*": PriceSpec(input=1, output=2)})
    assert prices.of("llama-3.1-70b-instruct") == (0.6, 0.8)
    assert prices.of("llama-3.1-8b") == (0.1, 0.2)
    assert prices.of("qwen") == (1, 2)
    assert Prices({"a": PriceSpec(input=1, output=1)}).of("b") is None


@pytest.mark.parametrize(("spec", "says"), [
    ({"tokens": -5, "per": "day"}, "greater than 0"),
    ({"tokens": 0, "per": "day"}, "greater than 0"),
    ({"tokens": 10**16, "per": "day"}, "less than or equal"),
    ({"cost": 1e12, "per": "month"}, "less than or equal"),
    ({"cost": float("nan"), "per": "month"}, "finite"),
    ({"cost": -1, "per": "month"}, "greater than 0"),
    ({"cost": 1e-7, "per": "month"}, "at least 0.000001"),
    ({"tokens": 2.5, "per": "day"}, "whole number"),
    ({"tokens": True, "per": "day"}, "whole number"),
    ({"tokens": 10, "cost": 1, "per": "day"}, "exactly one of tokens, cost"),
    ({"per": "day"}, "exactly one of tokens, cost"),
    ({"tokens": 10, "per": "week"}, "'day' or 'month'"),
    ({"tokens": 10}, "Field required"),
])
def test_hostile_budgets_are_refused_clearly(spec, says):
    with pytest.raises(ValidationError) as refused:
        budget(**spec)
    assert says in str(refused.value)


def test_hostile_prices_are_refused():
    for price in ({"input": -1, "output": 1}, {"input": 1e9, "output": 1},
                  {"input": float("inf"), "output": 1}, {"input": 1}):
        with pytest.raises(ValidationError):
            RateLimitSpec.model_validate({"prices": {"*": price}})


def test_a_cost_budget_without_prices_is_a_config_error():
    config = {"backends": [{"name": "a", "url": "http://127.0.0.1:1"}],
              "auth": {"mode": "required", "tenants": {
                  "t": {"limits": {"budget": {"cost": 5, "per": "day"}}}}, "keys": [
                  {"id": "k", "value": "wk-0123456789abcdef", "tenant": "t"}]}}
    with pytest.raises(ValidationError, match=r"rate_limits\.prices is empty"):
        Settings.model_validate(config)
    config["rate_limits"] = {"prices": {"*": {"input": 1, "output": 1}}}
    assert Settings.model_validate(config).rate_limits.prices["*"].output == 1


def run(coroutine):
    return asyncio.run(coroutine)


def test_memory_budget_is_spent_refused_and_renewed_at_midnight_utc():
    async def go() -> None:
        clock = Clock(at("2026-12-05T23:58:30"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        key = [("key:k", budget(tokens=100, per="day"))]
        first = limiter.admit(key, 60, clock.now)
        assert isinstance(first, Ticket)
        refused = limiter.admit(key, 60, clock.now)
        assert isinstance(refused, Refusal) and refused.status == 429
        assert refused.code == "insufficient_quota" and refused.retry_after is None
        assert b"x-should-retry: false\r\n" in refused.headers()
        assert b"retry-after" not in refused.headers()
        assert "2026-12-06T00:00:00Z" in refused.message
        limiter.settle(first, 30)                 # used 30 of 60: 30 back
        assert isinstance(limiter.admit(key, 60, clock.now), Ticket)   # 30 + 60 = 90
        assert isinstance(limiter.admit(key, 11, clock.now), Refusal)  # 90 + 11 > 100
        clock.now = at("2026-12-06T00:00:00")     # a new day: the whole budget again
        assert isinstance(limiter.admit(key, 100, clock.now), Ticket)
        assert isinstance(limiter.admit(key, 1, clock.now), Refusal)
        assert limiter.budgets()["key:k"] == (period_of("day", clock.now), 100)
    run(go())


def test_memory_month_budget_rolls_over_the_new_year_and_ignores_gives_to_a_past_month():
    async def go() -> None:
        clock = Clock(at("2026-12-31T23:59:10"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        key = [("tenant:t", budget(tokens=1000, per="month"))]
        december = limiter.admit(key, 1000, clock.now)
        assert isinstance(december, Ticket)
        assert isinstance(limiter.admit(key, 1, clock.now), Refusal)
        clock.now = at("2027-01-01T00:00:05")
        limiter.settle(december, 0)               # its unused part was December's: lapsed
        january = limiter.admit(key, 1000, clock.now)
        assert isinstance(january, Ticket)
        assert isinstance(limiter.admit(key, 1, clock.now), Refusal)
        limiter.settle(january, 1200)             # used past the budget: charged
        clock.now = at("2027-01-31T23:00:00")
        assert limiter.budgets()["tenant:t"][1] == 1200
    run(go())


def test_a_budget_survives_idle_minutes_and_is_checked_before_the_rpm():
    async def go() -> None:
        clock = Clock(at("2026-12-05T10:00:30"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        limits = LimitValues.model_validate({"rpm": 1, "budget": {"tokens": 10, "per": "day"}})
        key = [("key:k", limits)]
        assert isinstance(limiter.admit(key, 10, clock.now), Ticket)
        clock.now += 3600                         # idle for an hour: minutes turned over
        limiter.admit([("key:other", LimitValues(rpm=5))], 0, clock.now)
        refused = limiter.admit(key, 1, clock.now)
        assert isinstance(refused, Refusal) and refused.code == "insufficient_quota"
        refused = limiter.admit(key, 0, clock.now)   # budget fits (0): then the rpm
        assert isinstance(refused, Ticket)
        refused = limiter.admit(key, 0, clock.now)
        assert isinstance(refused, Refusal) and refused.code == "rate_limit_exceeded"
    run(go())


def test_a_cost_budget_counts_cost_and_a_reload_keeps_what_was_spent():
    async def go() -> None:
        clock = Clock(at("2026-12-05T10:00:30"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        one = budget(cost=0.001, per="day")          # 1000 millionths
        ticket = limiter.admit([("tenant:t", one)], 10**6, clock.now, cost=800)
        assert isinstance(ticket, Ticket)            # tokens do not count, cost does
        assert isinstance(limiter.admit([("tenant:t", one)], 1, clock.now, 300), Refusal)
        more = budget(cost=0.002, per="day")
        assert isinstance(limiter.admit([("tenant:t", more)], 1, clock.now, 300), Ticket)
        assert limiter.budgets()["tenant:t"][1] == 1100
        limiter.settle(ticket, 10, used_cost=100)    # 700 back
        assert limiter.budgets()["tenant:t"][1] == 400
        usage = await limiter.budget_usage([("tenant:t", more)], clock.now)
        assert usage == [{"subject": "tenant:t", "kind": "cost", "per": "day", "limit": 0.002,
                          "spent": 0.0004, "remaining": 0.0016,
                          "period_start": "2026-12-05T00:00:00Z",
                          "resets_at": "2026-12-06T00:00:00Z", "source": "store"}]
    run(go())


def test_a_request_larger_than_the_whole_budget_is_insufficient_quota_at_once():
    async def go() -> None:
        clock = Clock(at("2026-12-05T10:00:30"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        refused = limiter.admit([("key:k", budget(tokens=100, per="month"))], 101, clock.now)
        assert isinstance(refused, Refusal) and refused.code == "insufficient_quota"
    run(go())


def test_each_429_is_counted_by_its_limit_and_subject_and_a_503_is_not():
    from warden.admission.limits import refusal_error
    from warden.tenancy.answers import Quota

    counts: dict[tuple[str, str], int] = {}
    for subject, limit, retry in [("ip:10.0.0.1", "rpm", 1.0), ("key:k", "max_concurrent", 1.0),
                                  ("tenant:t", "budget", None), ("key:k", "tpm", 3.0),
                                  ("key:k", "unavailable", 1.0)]:
        error = refusal_error(Refusal(subject, limit, retry, Quota()), counts)
        assert error.status == (503 if limit == "unavailable" else 429)
    assert counts == {("rpm", "ip"): 1, ("concurrency", "key"): 1, ("budget", "tenant"): 1,
                      ("tpm", "key"): 1}


def test_a_leased_budget_running_low_asks_for_a_lease_whatever_the_other_limits_hold():
    from warden.tenancy.subject import SubjectState

    limits = LimitValues.model_validate({"rpm": 1000, "budget": {"tokens": 10_000,
                                                                "per": "day"}})
    state = SubjectState("key:k", limits, 0, 0.1, 30.0, whole=False, now=at("2026-12-05T10:00"))
    assert state.requests is not None and state.budget is not None
    state.requests.granted(100, 100, 100)     # the rpm holds plenty
    state.budget.granted(1000, 1000, 1000)    # a budget lease: 1,000 tokens
    assert not state.take(100, 0, 0.0)        # 900 left: nothing to ask
    assert state.take(500, 0, 0.0)            # 400 left, below half a lease: ask


def test_a_budget_that_came_with_a_reload_is_not_given_what_earlier_requests_never_took():
    async def go() -> None:
        clock = Clock(at("2026-12-05T10:00:30"))
        limiter = build_limiter(RateLimitSpec(), clock=clock)
        before = limiter.admit([("key:k", LimitValues(rpm=10))], 50, clock.now)
        now = [("key:k", LimitValues.model_validate(
            {"rpm": 10, "budget": {"tokens": 100, "per": "day"}}))]
        during = limiter.admit(now, 60, clock.now)
        assert isinstance(before, Ticket) and isinstance(during, Ticket)
        limiter.settle(before, 0)                 # reserved nothing from the budget
        assert limiter.budgets()["key:k"][1] == 60
        limiter.settle(during, 20)
        assert limiter.budgets()["key:k"][1] == 20
    run(go())
