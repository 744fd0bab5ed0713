"""A backend's recent exchanges (the suspects when it dies) are bounded by count and, when a
large body joins, by the request bytes they hold; the newest is always kept."""

from __future__ import annotations

from warden.edge.request import HttpRequest
from warden.exchange import Exchange
from warden.fleet.recent import RECENT_PER_BACKEND, held_by, recent_exchanges, trim_to_bytes


def sent(body_bytes: int, forwarded_bytes: int | None = None) -> Exchange:
    exchange = Exchange(b"r", "/v1/completions", "127.0.0.1", 0.0)
    exchange.request = HttpRequest(b"POST", b"/v1/completions", {}, [], b"x" * body_bytes,
                                   True, "127.0.0.1", 0.0)
    if forwarded_bytes is not None:
        exchange.forwarded_body = b"y" * forwarded_bytes
    return exchange


def test_the_oldest_go_when_there_are_too_many():
    recent = recent_exchanges()
    exchanges = [sent(10) for _ in range(RECENT_PER_BACKEND + 2)]
    recent.extend(exchanges)
    assert list(recent) == exchanges[2:] and sum(map(held_by, recent)) == 10 * len(recent)


def test_the_oldest_go_when_they_hold_too_many_bytes():
    recent = recent_exchanges()
    big, rewritten, small = sent(60), sent(20, forwarded_bytes=20), sent(30)
    recent.extend((big, rewritten, small))
    trim_to_bytes(recent, max_bytes=100)
    assert list(recent) == [rewritten, small] and sum(map(held_by, recent)) == 70


def test_the_newest_stays_however_large():
    recent = recent_exchanges()
    huge = sent(1000)
    recent.extend((sent(10), huge))
    trim_to_bytes(recent, max_bytes=100)
    assert list(recent) == [huge] and sum(map(held_by, recent)) == 1000 and len(recent) == 1
