"""The incident detector's ear on finished exchanges (an `ExchangeListener`).

Compiled (warden.compiled): it runs for every request, and only a few need the detector — one
that did not end cleanly, got a 5xx, or ended on a backend that is down — so the check that
lets the rest pass costs a few attribute reads, not a call into the (interpreted) detector."""

from __future__ import annotations

from warden.exchange import Exchange, NativeListener
from warden.forensics.incidents import IncidentDetector
from warden.stream.observer import Verdict


class IncidentListener(NativeListener):
    def __init__(self, detector: IncidentDetector):
        self._detector = detector
        # (what was sent where, the forwarder keeps: Backend.recent)
        self.hears_started = False

    def started(self, exchange: Exchange) -> None:
        pass

    def ended(self, exchange: Exchange) -> None:
        if exchange.backend is None:
            return  # never sent (refused, no backend): nothing to say of a backend
        detector = self._detector
        if exchange.verdict != Verdict.COMPLETE or exchange.status >= 500 or detector.down:
            detector.exchange_ended(exchange, exchange.ended_at)
