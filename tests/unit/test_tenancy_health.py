"""The limits' store health (warden/tenancy/health.py): an outage is told once, summarised at
most once a minute, its end told with what happened meanwhile; retries back off; `state()`
says it all. A fake clock drives it."""

from __future__ import annotations

import asyncio
import logging

from warden.tenancy.health import FIRST_RETRY, MAX_RETRY, StoreHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def health(clock: Clock, fail_mode: str = "open") -> StoreHealth:
    return StoreHealth(store="redis", mode="leased", fail_mode=fail_mode, timeout=0.5,
                       log=logging.getLogger("test.limits"), clock=clock)


def lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "test.limits"]


def test_an_outage_is_told_once_summarised_each_minute_and_its_end_told(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock()
    store = health(clock)
    for _ in range(50):                                  # every retry fails
        store.failed(TimeoutError())
        clock.now += 0.5
        assert store.unavailable()                       # open: admitted, counted
    told = lines(caplog)
    assert len(told) == 1 and "store unreachable (TimeoutError: no answer within 0.5s)" in \
        told[0] and "admitted unchecked" in told[0]
    clock.now += 40.0
    store.failed(ConnectionRefusedError(111, "Connection refused"))
    assert len(lines(caplog)) == 2
    assert "still unreachable (ConnectionRefusedError: [Errno 111] Connection refused): 50 " \
        "admitted unchecked, 0 refused in the last 65 s" in lines(caplog)[1]
    clock.now += 5.0
    store.worked()
    assert "answers again after 70.0 s; 50 admitted unchecked and 0 refused" in lines(caplog)[2]
    store.worked()                                       # still up: nothing more said
    assert len(lines(caplog)) == 3


def test_an_outage_soon_after_the_last_line_is_summarised_not_told(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock()
    store = health(clock, fail_mode="closed")
    store.failed("refused")
    store.worked()
    clock.now += 1.0
    store.failed("refused")                              # flapping: not a new line
    assert not store.unavailable()                       # closed: refused, counted
    store.worked()
    assert len(lines(caplog)) == 2
    clock.now += 61.0
    store.failed("refused")
    assert len(lines(caplog)) == 3 and "are refused until it answers" in lines(caplog)[2]
    assert store.state()["refused_unavailable"] == 1


def test_retries_back_off_and_the_state_says_since_when():
    clock = Clock()
    store = health(clock)
    delays = [store.failed("down") for _ in range(8)]
    assert delays[0] == FIRST_RETRY and delays[-1] == MAX_RETRY
    assert delays == sorted(delays)
    state = store.state()
    assert (state["up"], state["since"], state["failures"], state["error"]) == \
        (False, 1000.0, 8, "down")
    clock.now = 1010.0
    store.worked()
    assert store.state()["up"] and store.state()["since"] == 1010.0
    assert store.failed("again") == FIRST_RETRY        # a new outage starts over


def test_until_waits_for_the_store_to_go_down_and_come_back():
    async def scenario():
        store = health(Clock())
        down = asyncio.ensure_future(store.until(False))
        await asyncio.sleep(0)
        assert not down.done()
        store.failed("down")
        await asyncio.wait_for(down, 1.0)
        up = asyncio.ensure_future(store.until(True))
        store.worked()
        await asyncio.wait_for(up, 1.0)
    asyncio.run(scenario())
