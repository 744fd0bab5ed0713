"""A backend's recent exchanges (the suspects when it dies) are bounded by count and by the
request bytes they hold; the newest is always kept."""

from __future__ import annotations

from warden.edge.request import HttpRequest
from warden.forensics.recent import RecentExchanges
from warden.proxy.exchange import Exchange


def sent(body_bytes: int, forwarded_bytes: int | None = None) -> Exchange:
    exchange = Exchange(b"r", "/v1/completions", "127.0.0.1", 0.0)
    exchange.request = HttpRequest(b"POST", b"/v1/completions", {}, [], b"x" * body_bytes,
                                   True, "127.0.0.1", 0.0)
    if forwarded_bytes is not None:
        exchange.forwarded_body = b"y" * forwarded_bytes
    return exchange


def test_the_oldest_go_when_there_are_too_many():
    recent = RecentExchanges(max_count=3, max_bytes=10**6)
    exchanges = [sent(10) for _ in range(5)]
    for exchange in exchanges:
        recent.append(exchange)
    assert list(recent) == exchanges[2:] and recent.held_bytes == 30


def test_the_oldest_go_when_they_hold_too_many_bytes():
    recent = RecentExchanges(max_count=64, max_bytes=100)
    big, rewritten, small = sent(60), sent(20, forwarded_bytes=20), sent(30)
    for exchange in (big, rewritten, small):
        recent.append(exchange)
    assert list(recent) == [rewritten, small] and recent.held_bytes == 70


def test_the_newest_stays_however_large():
    recent = RecentExchanges(max_count=64, max_bytes=100)
    recent.append(sent(10))
    huge = sent(1000)
    recent.append(huge)
    assert list(recent) == [huge] and recent.held_bytes == 1000 and len(recent) == 1
