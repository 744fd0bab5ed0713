"""The admin page's live traffic (admin.traffic): per-second counts, errors by kind and TTFT
quantiles over a bounded ring; the guard's recent decisions, bounded too."""

from __future__ import annotations

from warden.admin.traffic import DECISIONS, SECONDS, TTFT_SAMPLES, Traffic, quantile
from warden.exchange import Exchange


def ended(at: float, status: int = 200, verdict: str | None = "complete",
          ttft: float | None = None, notes: list[str] | None = None,
          sent: bool = True, rewritten: bool = False) -> Exchange:
    exchange = Exchange(b"r-%d" % int(at * 1000), "/v1/chat/completions", "127.0.0.1", at)
    exchange.ended_at = at
    exchange.status = status
    exchange.verdict = verdict
    exchange.ttft = ttft
    exchange.model = "m"
    exchange.guard_notes = notes
    exchange.sent_at = at if sent else 0.0
    exchange.forwarded_body = b"{}" if rewritten else None
    return exchange


def test_each_second_counts_its_requests_errors_and_ttft():
    traffic = Traffic()
    for i in range(10):
        traffic.ended(ended(100.1 + i / 100, ttft=0.01 * (i + 1)))
    traffic.ended(ended(100.5, status=200, verdict="upstream_eof"))
    traffic.ended(ended(101.2, status=429, verdict=None, sent=False))
    traffic.ended(ended(101.3, status=500, verdict="complete"))
    stats = traffic.stats(now=102.0, window=3)
    assert [s["t"] for s in stats["series"]] == [-2, -1, 0]
    first, second, quiet = stats["series"]
    assert first["requests"] == 11 and first["errors"] == {"upstream_eof": 1}
    assert first["ttft_p50"] == 0.05 and first["ttft_p99"] == 0.1
    assert second["requests"] == 2 and second["errors"] == {"429": 1, "500": 1}
    assert second["ttft_p50"] is None
    assert quiet == {"t": 0, "requests": 0, "errors": {}, "ttft_p50": None, "ttft_p99": None}
    assert stats["errors"] == {"upstream_eof": 1, "429": 1, "500": 1}


def test_the_ring_and_its_samples_are_bounded():
    traffic = Traffic()
    for second in range(SECONDS + 50):
        traffic.ended(ended(float(second)))
    for n in range(TTFT_SAMPLES * 2):
        traffic.ended(ended(SECONDS + 50 + n / 10_000, ttft=1.0 if n < TTFT_SAMPLES else 9.0))
    assert len(traffic._ring) == SECONDS
    assert traffic._ring[0].second == 51  # the oldest went
    last = traffic._ring[-1]
    assert last.requests == TTFT_SAMPLES * 2 and len(last.ttfts) == TTFT_SAMPLES
    stats = traffic.stats(now=SECONDS + 50.5, window=SECONDS * 10)  # asked too much: capped
    assert stats["seconds"] == SECONDS


def test_the_guard_decisions_are_kept_newest_last_and_bounded():
    traffic = Traffic()
    traffic.ended(ended(1.0))  # the guard did nothing: nothing kept
    traffic.ended(ended(2.0, status=400, verdict=None, sent=False,
                        notes=["rejected so-no-constraint"]))
    traffic.ended(ended(3.0, notes=["normalized so-no-constraint"], rewritten=True))
    traffic.ended(ended(4.0, notes=["would normalize so-no-constraint"]))
    assert [(d["outcome"], d["status"]) for d in traffic.decisions] == [
        ("refused", 400), ("changed", 200), ("noted", 200)]
    assert traffic.decisions[0]["notes"] == ["rejected so-no-constraint"]
    for n in range(DECISIONS + 5):
        traffic.ended(ended(10.0 + n, notes=["x"]))
    assert len(traffic.decisions) == DECISIONS


def test_quantiles_by_nearest_rank():
    assert quantile([], 0.5) is None
    assert quantile([0.2], 0.99) == 0.2
    values = [i / 100 for i in range(1, 101)]
    assert quantile(values, 0.5) == 0.5 and quantile(values, 0.99) == 0.99
