"""What the admin page draws of the live traffic, kept by one listener of finished exchanges:
a ring of per-second buckets (requests, errors by verdict, time to first token) over the
last `SECONDS`, and the last `DECISIONS` requests the guard refused or changed.

Bounded whatever the load: the ring holds `SECONDS` buckets, each at most `TTFT_SAMPLES`
times (the first of the second: enough for a p99 drawn on a chart), and the decisions a
deque of `DECISIONS`. Per request: a few attribute reads, a counter, one list append while
the second's samples last; a deque append only for a request the guard acted on. No clock
read: the exchange's `ended_at` says which second it is. Compiled (warden/compiled.py): it
hears every request."""

from __future__ import annotations

import time
from collections import deque
from typing import Final

from warden.exchange import Exchange, NativeListener

SECONDS: Final = 300
TTFT_SAMPLES: Final = 256
DECISIONS: Final = 100


class Second:
    """One second of traffic (by `time.monotonic()`)."""

    def __init__(self, second: int):
        self.second = second
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.ttfts: list[float] = []


class Traffic(NativeListener):
    """An `ExchangeListener` (exchange.py) that keeps the live traffic for GET /admin/stats
    and the guard's recent decisions for GET /admin/guard/recent."""

    def __init__(self) -> None:
        self.hears_started = False  # (an ExchangeListener that counts at the end only)
        self._ring: deque[Second] = deque(maxlen=SECONDS)
        self._now: Second | None = None
        self.decisions: deque[dict] = deque(maxlen=DECISIONS)

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        second = int(exchange.ended_at)
        bucket = self._now
        if bucket is None or bucket.second != second:
            bucket = self._now = Second(second)
            self._ring.append(bucket)
        bucket.requests += 1
        status = exchange.status
        verdict = exchange.verdict
        if status >= 400 or (verdict is not None and verdict != "complete"):
            # Sent: how it ended (a complete answer that was an error: its status); refused
            # before a backend: its status.
            key = verdict if verdict is not None and verdict != "complete" else str(status)
            bucket.errors[key] = bucket.errors.get(key, 0) + 1
        ttft = exchange.ttft
        if ttft is not None and len(bucket.ttfts) < TTFT_SAMPLES:
            bucket.ttfts.append(ttft)
        if exchange.guard_notes:
            self._decided(exchange)

    def _decided(self, exchange: Exchange) -> None:
        refused = exchange.status >= 400 and not exchange.sent_at
        self.decisions.append({
            "at": time.time(), "id": exchange.request_id.decode("latin-1"),
            "model": exchange.model, "tenant": exchange.tenant,
            "principal": exchange.principal, "endpoint": exchange.endpoint,
            "outcome": "refused" if refused else "changed" if exchange.forwarded_body
            is not None else "noted", "status": exchange.status,
            "notes": list(exchange.guard_notes or ()), "error": exchange.error if refused
            else None})

    def stats(self, now: float, window: int = SECONDS) -> dict:
        """The last `window` seconds before `now` (monotonic), oldest first, one entry per
        second (a quiet second is zeros): requests, errors by kind, TTFT p50 and p99."""
        last = int(now)
        first = last - max(1, min(window, SECONDS)) + 1
        held = {b.second: b for b in self._ring if first <= b.second <= last}
        series = []
        totals: dict[str, int] = {}
        for second in range(first, last + 1):
            bucket = held.get(second)
            if bucket is None:
                series.append({"t": second - last, "requests": 0, "errors": {},
                               "ttft_p50": None, "ttft_p99": None})
                continue
            for kind, count in bucket.errors.items():
                totals[kind] = totals.get(kind, 0) + count
            ttfts = sorted(bucket.ttfts)
            series.append({"t": second - last, "requests": bucket.requests,
                           "errors": dict(bucket.errors),
                           "ttft_p50": quantile(ttfts, 0.5),
                           "ttft_p99": quantile(ttfts, 0.99)})
        return {"seconds": len(series), "series": series, "errors": totals}


def quantile(ordered: list[float], q: float) -> float | None:
    """The `q` quantile of sorted values (nearest rank), rounded to the millisecond."""
    if not ordered:
        return None
    rank = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))
    return round(ordered[rank], 4)
