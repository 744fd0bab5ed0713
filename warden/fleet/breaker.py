"""A three-state circuit breaker per backend, and nginx-style passive ejection. Pure: every
method takes the time (`time.monotonic()`), so tests drive them with a fake clock.

What counts: the forwarder reports a failure when a backend refused the connection, dropped
or cut a response, timed out, or answered 5xx; any other answer (a client's 4xx included) is
a success. Each is reported once per request.

Breaker (with its half-open state bounded by requests in flight, not by requests
admitted in total): closed → `failures` failures in a row → open (no requests) for
`open_for` → half-open: at most `probes` requests at once; `probes` successes in a row close
it, a failure opens it again. Each half-open round is numbered, and a probe carries its
round's number (`sent()`): a probe of an earlier round that ends late neither frees a slot of
this round nor counts toward closing it (the backend it judged may have failed since).
"""

from __future__ import annotations

from collections import deque

from warden.config.schema import BreakerSpec, PassiveHealthSpec

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, spec: BreakerSpec, rounds: int = 0):
        """`rounds`: the half-open rounds of the breaker it replaces (a reload that turned
        the backend's breaker off and on again): its probes still in flight are not this
        one's."""
        self.spec = spec
        self.state = CLOSED
        self.failures = 0           # in a row, while closed
        self.opened_at = 0.0
        self.probing = 0            # half-open: probes in flight
        self.round = rounds         # half-open rounds so far (the current one's number)
        self.successes = 0          # half-open: probes that succeeded, in a row
        self.trips = 0              # times it opened

    def allows(self, now: float) -> bool:
        """May a request be sent now? (An open breaker turns half-open when its time is up.)"""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self.opened_at < self.spec.open_for:
                return False
            self.state = HALF_OPEN
            self.probing = self.successes = 0
            self.round += 1
        return self.probing < self.spec.probes

    def sent(self) -> int:
        """A request was sent; if it is a half-open probe, its round's number (report its end
        with it), else 0."""
        if self.state == HALF_OPEN:
            self.probing += 1
            return self.round
        return 0

    def succeeded(self, probe: int) -> None:
        if self.state == CLOSED:
            self.failures = 0
        elif self.state == HALF_OPEN and probe == self.round:
            self.probing -= 1
            self.successes += 1
            if self.successes >= self.spec.probes:
                self.state = CLOSED
                self.failures = 0

    def abandoned(self, probe: int) -> None:
        """A probe ended with no verdict (the client left before the backend answered)."""
        if self.state == HALF_OPEN and probe == self.round:
            self.probing -= 1

    def failed(self, now: float, probe: int) -> None:
        if self.state == CLOSED:
            self.failures += 1
            if self.failures >= self.spec.failures:
                self._open(now)
        elif self.state == HALF_OPEN:  # (any failure now, a late one too, opens it again)
            if probe == self.round:
                self.probing -= 1
            self._open(now)
        # open: a request sent before it opened failed too: nothing changes

    def _open(self, now: float) -> None:
        self.state = OPEN
        self.opened_at = now
        self.trips += 1

    def snapshot(self, now: float) -> dict:
        info: dict = {"state": self.state, "trips": self.trips}
        if self.state == OPEN:
            info["half_open_in"] = round(max(0.0, self.opened_at + self.spec.open_for - now), 3)
        if self.state == CLOSED:
            info["failures_in_a_row"] = self.failures
        return info


class PassiveEjection:
    """nginx's max_fails/fail_timeout: `max_fails` failures within `fail_timeout` eject the
    backend for `fail_timeout`; it then returns to rotation with no probing."""

    def __init__(self, spec: PassiveHealthSpec):
        self.spec = spec
        self._failures: deque[float] = deque()
        self.ejected_until = 0.0

    def failed(self, now: float) -> bool:
        """Count a failure; True if it ejects the backend."""
        if not self.spec.max_fails:
            return False
        failures = self._failures
        failures.append(now)
        while failures and now - failures[0] > self.spec.fail_timeout:
            failures.popleft()
        if len(failures) >= self.spec.max_fails:
            failures.clear()
            self.ejected_until = now + self.spec.fail_timeout
            return True
        return False

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until
