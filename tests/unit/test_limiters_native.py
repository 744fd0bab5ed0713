"""The limits' stages call a shipped limiter through its compiled base (tenancy/native.py)
and any other `Limiter` through an adapter of the protocol: the same answers either way, each ticket
settled once, the `x-ratelimit-*` lines on the admitted request."""

from __future__ import annotations

import time

import pytest

from tests.unit.test_relay import REQUEST, FakeClient
from warden.admission.limits import LimitStage
from warden.config.limits_schema import LimitValues, RateLimitSpec
from warden.proxy.relay import Relay
from warden.tenancy.budget import Prices
from warden.tenancy.keys import ApiKey, Models
from warden.tenancy.limiter import LIMITERS, Limiter, build_limiter
from warden.tenancy.native import NativeLimiter
from warden.tenancy.settle import LimitSettler


@pytest.mark.parametrize(("store", "mode"), sorted(LIMITERS))
def test_every_shipped_limiter_is_called_through_its_compiled_base(store, mode):
    limiter = build_limiter(RateLimitSpec(store=store, mode=mode))
    assert isinstance(limiter, NativeLimiter)


class Delegating:
    """A `Limiter` that is not a `NativeLimiter` (as a test's or a plugin's would be): it
    counts its calls and hands them to the memory store's limiter."""

    def __init__(self, inner: Limiter) -> None:
        self.inner = inner
        self.refusals = inner.refusals
        self.clock = inner.clock
        self.admits = 0
        self.settles = 0

    def admit(self, subjects, tokens, now, cost=0):
        self.admits += 1
        return self.inner.admit(subjects, tokens, now, cost)

    def settle(self, ticket, used_tokens, now=None, used_cost=0):
        self.settles += 1
        self.inner.settle(ticket, used_tokens, now, used_cost)


def limited_relay() -> Relay:
    relay = Relay(REQUEST, FakeClient(), b"r1", None)  # type: ignore[arg-type]
    relay.grant = ApiKey("k", None, Models(None), limits=LimitValues(rpm=1))
    return relay


@pytest.mark.parametrize("native", [True, False])
def test_a_limiter_is_asked_and_settled_the_same_natively_or_through_its_protocol(native):
    inner = build_limiter(RateLimitSpec(store="memory"))
    limiter: Limiter = inner if native else Delegating(inner)  # type: ignore[assignment]
    stage, settler = LimitStage(limiter, 16, Prices({})), LimitSettler(limiter)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    first = limited_relay()
    assert stage.admit(first, body) is None
    assert b"x-ratelimit-remaining-requests: 0\r\n" in first.response_headers
    refused = stage.admit(limited_relay(), body)  # (rpm 1: the second is over)
    assert refused is not None and refused.status == 429
    first.ended_at = time.monotonic()
    settler.ended(first)
    assert first.limits_ticket is not None and first.limits_ticket.settled
    if not native:
        assert (limiter.admits, limiter.settles) == (2, 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize("native", [True, False])
def test_the_stage_stamps_an_admission_with_the_limiters_clock(native):
    """One ledger, one clock: a limiter given a clock (here 90 s after the epoch, the
    window 60-120 s) sees the stage's admissions at that time, not the machine's."""
    inner = build_limiter(RateLimitSpec(store="memory"), clock=lambda: 90.0)
    limiter: Limiter = inner if native else Delegating(inner)  # type: ignore[assignment]
    relay = limited_relay()
    assert LimitStage(limiter, 16, Prices({})).admit(relay, {"model": "m", "prompt": "x"}) \
        is None
    assert inner.states["key:k"].window == 1  # type: ignore[attr-defined]
    assert b"x-ratelimit-reset-requests: 30s\r\n" in relay.response_headers
