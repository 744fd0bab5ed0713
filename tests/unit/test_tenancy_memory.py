"""The limiter with the memory store (one replica), driven by a fake clock: the API the
admission stage and the exchange's end use, and what it answers."""

from __future__ import annotations

import asyncio

import pytest

from warden.config.limits_schema import LimitValues, RateLimitSpec
from warden.tenancy.answers import (
    Quota,
    Refusal,
    ResetTexts,
    Ticket,
    duration_bytes,
    duration_text,
)
from warden.tenancy.limiter import build_limiter

T0 = 60 * 28_333_334 + 40.0   # 40 s into a minute window
KEY = LimitValues(rpm=3, tpm=1000, max_concurrent=2)


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limiter(clock):
    return build_limiter(RateLimitSpec(), clock=clock)


def admitted(answer: object) -> Ticket:
    assert isinstance(answer, Ticket), answer
    return answer


def refused(answer: object, limit: str) -> Refusal:
    assert isinstance(answer, Refusal) and answer.limit == limit, answer
    return answer


def test_requests_per_minute_hold_until_the_window_ends(limiter, clock):
    for _ in range(3):
        limiter.settle(admitted(limiter.admit([("key", KEY)], 0, clock.now)), 0)
    refusal = refused(limiter.admit([("key", KEY)], 0, clock.now), "rpm")
    assert refusal.retry_after == pytest.approx(20.0) and refusal.status == 429
    assert refusal.code == "rate_limit_exceeded" and "key" in refusal.message
    assert b"x-ratelimit-remaining-requests: 0\r\n" in refusal.headers()
    assert b"retry-after: 20\r\nretry-after-ms: 20000\r\n" in refusal.headers()
    clock.now += 20.0                                    # the next window
    admitted(limiter.admit([("key", KEY)], 0, clock.now))


def test_every_subject_applies_and_a_refusal_takes_nothing(limiter, clock):
    key, tenant = LimitValues(rpm=3), LimitValues(rpm=2)
    for _ in range(2):
        admitted(limiter.admit([("key", key), ("tenant", tenant)], 0, clock.now))
    refusal = refused(limiter.admit([("key", key), ("tenant", tenant)], 0, clock.now), "rpm")
    assert refusal.subject == "tenant"
    ticket = admitted(limiter.admit([("key", key)], 0, clock.now))  # the key's third
    assert ticket.quota.remaining_requests == 0


def test_tokens_are_reserved_then_given_back_or_charged(limiter, clock):
    tokens = LimitValues(tpm=1000)
    first = admitted(limiter.admit([("k", tokens)], 400, clock.now))
    second = admitted(limiter.admit([("k", tokens)], 400, clock.now))
    assert second.quota.remaining_tokens == 200
    refused(limiter.admit([("k", tokens)], 400, clock.now), "tpm")
    limiter.settle(first, 100)                           # 300 of its 400 come back
    third = admitted(limiter.admit([("k", tokens)], 400, clock.now))
    assert third.quota.remaining_tokens == 100
    limiter.settle(second, 700)                          # 300 more than it reserved
    refused(limiter.admit([("k", tokens)], 1, clock.now), "tpm")
    limiter.settle(third, 0)                             # the whole reservation back
    assert admitted(limiter.admit([("k", tokens)], 200, clock.now)).quota.remaining_tokens == 0


def test_a_reservation_over_the_limit_is_refused_for_good(limiter, clock):
    refusal = refused(limiter.admit([("k", LimitValues(tpm=1000))], 1001, clock.now), "tpm")
    assert refusal.retry_after is None and b"retry-after" not in refusal.headers()
    assert "limit 1000, requested 1001" in refusal.message


def test_a_settle_after_the_window_charges_the_excess_to_the_next_and_returns_nothing(
        limiter, clock):
    tokens = LimitValues(tpm=1000)
    early = admitted(limiter.admit([("k", tokens)], 500, clock.now))
    late = admitted(limiter.admit([("k", tokens)], 500, clock.now))
    clock.now += 30.0
    limiter.settle(early, 0)                             # its window is over: nothing back
    limiter.settle(late, 800)                            # 300 too many: the new window's
    ticket = admitted(limiter.admit([("k", tokens)], 700, clock.now))
    assert ticket.quota.remaining_tokens == 0


def test_concurrency_slots_are_freed_by_settle_once(limiter, clock):
    first = admitted(limiter.admit([("key", KEY)], 0, clock.now))
    admitted(limiter.admit([("key", KEY)], 0, clock.now))
    refusal = refused(limiter.admit([("key", KEY)], 0, clock.now), "max_concurrent")
    assert refusal.retry_after == 1.0
    limiter.settle(first, 0)
    limiter.settle(first, 0)                             # a second settle is a no-op ...
    assert limiter.state()["double_settles"] == 1        # ... counted
    admitted(limiter.admit([("key", KEY)], 0, clock.now))
    refused(limiter.admit([("key", KEY)], 0, clock.now), "rpm")


def test_callers_bugs_are_errors_and_odd_values_harmless(limiter, clock):
    with pytest.raises(ValueError, match="negative"):
        limiter.admit([("key", KEY)], -1, clock.now)
    with pytest.raises(ValueError, match="twice"):
        limiter.admit([("key", KEY), ("key", KEY)], 0, clock.now)
    ticket = admitted(limiter.admit([("k", LimitValues(tpm=100))], 50, clock.now))
    limiter.settle(ticket, -20)                          # counted as none used
    assert admitted(limiter.admit([("k", LimitValues(tpm=100))], 100, clock.now))
    free = admitted(limiter.admit([], 10, clock.now))    # no subject, no limit
    assert free.headers() == b""
    admitted(limiter.admit([("open", LimitValues())], 10**9, clock.now))


def test_headers_show_the_subject_with_the_least_left():
    limiter = build_limiter(RateLimitSpec(), clock=Clock())
    key, tenant = LimitValues(rpm=60, tpm=5000), LimitValues(rpm=600, tpm=2000)
    ticket = admitted(limiter.admit([("key", key), ("tenant", tenant)], 500, T0 + 0.25))
    assert ticket.headers() == (
        b"x-ratelimit-limit-requests: 60\r\nx-ratelimit-remaining-requests: 59\r\n"
        b"x-ratelimit-reset-requests: 19.75s\r\n"
        b"x-ratelimit-limit-tokens: 2000\r\nx-ratelimit-remaining-tokens: 1500\r\n"
        b"x-ratelimit-reset-tokens: 19.75s\r\n")


def test_durations_are_written_as_openai_writes_them():
    assert [duration_text(s) for s in (0.0173, 1.0, 1.5, 59.9994, 360.0, 61.25)] == \
        ["18ms", "1s", "1.5s", "1m0s", "6m0s", "1m1.25s"]


def test_the_kept_reset_text_is_the_text_of_each_time_asked():
    texts = ResetTexts()
    times = [0.0173, 0.0173, 0.017, 0.0170001, 0.0169999, 0.016, 1.0, 0.9995, 1.0005, 0.0,
             -0.5, 0.0004, -3.0, 0.001, 59.9994, 1e-9, 60.0]
    assert [texts.of(t) for t in times] == [duration_bytes(t) for t in times]


def test_headers_write_the_limits_of_the_moment_after_a_change(limiter, clock):
    admitted(limiter.admit([("key", LimitValues(rpm=3, tpm=900))], 10, clock.now))
    ticket = admitted(limiter.admit([("key", LimitValues(rpm=40, tpm=9000))], 10, clock.now))
    assert b"x-ratelimit-limit-requests: 40\r\nx-ratelimit-remaining-requests: 38\r\n" \
        in ticket.headers()
    assert b"x-ratelimit-limit-tokens: 9000\r\nx-ratelimit-remaining-tokens: 8980\r\n" \
        in ticket.headers()
    assert Quota(limit_requests=7, remaining_requests=2).headers().startswith(
        b"x-ratelimit-limit-requests: 7\r\n")                 # no text kept: written


def test_subjects_are_forgotten_when_their_window_ends_unless_they_hold_slots(limiter, clock):
    for n in range(1000):
        admitted(limiter.admit([(f"key-{n}", LimitValues(rpm=5))], 0, clock.now))
    running = admitted(limiter.admit([("busy", KEY)], 0, clock.now))
    assert limiter.state()["subjects"] == 1001
    clock.now += 60.0
    admitted(limiter.admit([("key-1", LimitValues(rpm=5))], 0, clock.now))
    assert limiter.state()["subjects"] == 2              # key-1 and busy (a slot in use)
    limiter.settle(running, 0)
    clock.now += 60.0
    admitted(limiter.admit([("key-1", LimitValues(rpm=5))], 0, clock.now))
    assert limiter.state()["subjects"] == 1


def test_new_limits_apply_from_now_on(limiter, clock):
    for _ in range(3):
        admitted(limiter.admit([("key", LimitValues(rpm=3))], 0, clock.now))
    refused(limiter.admit([("key", LimitValues(rpm=3))], 0, clock.now), "rpm")
    admitted(limiter.admit([("key", LimitValues(rpm=4))], 0, clock.now))   # raised by one
    refused(limiter.admit([("key", LimitValues(rpm=4))], 0, clock.now), "rpm")
    admitted(limiter.admit([("key", LimitValues(tpm=10))], 5, clock.now))  # rpm lifted
    slots = LimitValues(max_concurrent=1)
    admitted(limiter.admit([("key", slots)], 0, clock.now))
    refused(limiter.admit([("key", slots)], 0, clock.now), "max_concurrent")


def test_the_memory_store_needs_no_loop_and_is_always_up(limiter):
    async def scenario():
        await asyncio.wait_for(limiter.run(), 1.0)        # returns at once
        await limiter.quiet()
        await limiter.close()
    asyncio.run(scenario())
    state = limiter.state()
    assert (state["store"], state["up"], state["fail_mode"]) == ("memory", True, "open")


def test_a_settle_after_a_change_of_limits_keeps_the_newest(limiter, clock):
    """A ticket of the old limits, settled after its subject was forgotten (a window turned)
    and taken up again under new ones: the subject keeps the new limits, its slots and its
    budget (not rebuilt with the old, and again with the new: the slots in use forgotten)."""
    old = LimitValues(rpm=10, tpm=1000)
    new = LimitValues(rpm=10, tpm=1000, max_concurrent=2)
    ticket = admitted(limiter.admit([("key", old)], 100, clock.now))
    clock.now += 60   # the next window: the old state has nothing to keep
    admitted(limiter.admit([("key", new)], 10, clock.now))
    limiter.settle(ticket, 300)   # used more than it reserved: charged to this window
    state = limiter.states["key"]
    assert state.limits is new and state.slots is not None and state.slots.in_use == 1
    assert state.tokens.remaining() == 1000 - 10 - 200
