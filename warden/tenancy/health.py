"""Whether the limits' store answers, and what happened while it did not.

A store that fails (Redis unreachable, or no answer within the timeout) is *down* from the
first failed call until the first call that works (the background loop retries with a
backoff that doubles from `FIRST_RETRY` to `MAX_RETRY`: recovery needs no restart). It is
told in the log with backoff (warden/backoff.py): one line when it goes down, a summary at
most once a minute while it stays down, one line when it is back (with what was admitted
unchecked or refused meanwhile); a failure that comes and goes faster than that is
summarised, not told each time. `state()` is for /ready and the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from warden.backoff import Backoff, Outage
from warden.errors import error_text

FIRST_RETRY = 0.1
MAX_RETRY = 2.0


class StoreHealth:
    def __init__(self, *, store: str, mode: str, fail_mode: str, timeout: float | None = None,
                 log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.mode = mode
        self.fail_mode = fail_mode
        self.timeout = timeout
        self._log = log or logging.getLogger("warden.limits")
        self._clock = clock
        self.up = True
        self.since = clock()              # up, or down, since (wall clock)
        self.error: str | None = None     # the last failure's, while down
        self.failures = 0                 # store calls that failed, in all
        self.admitted_unchecked = 0       # admitted while down (fail_mode open), in all
        self.refused_unavailable = 0      # refused while down (fail_mode closed), in all
        self._retry = Backoff(FIRST_RETRY, MAX_RETRY)
        self._outage = Outage()
        self._counts_said = (0, 0)        # (unchecked, refused) when the log last spoke
        self._counts_down = (0, 0)        # ... when the store went down
        self._flipped = asyncio.Event()

    @property
    def open(self) -> bool:
        return self.fail_mode == "open"

    def unavailable(self) -> bool:
        """A request the store was needed for, while it is down: True to admit it (open)."""
        if self.open:
            self.admitted_unchecked += 1
            return True
        self.refused_unavailable += 1
        return False

    def failed(self, error: BaseException | str) -> float:
        """A store call failed; returns how long to wait before the next try."""
        now = self._clock()
        self.failures += 1
        self.error = error_text(error, self.timeout)
        if self.up:
            self._flip(False, now)
            self._counts_down = (self.admitted_unchecked, self.refused_unavailable)
            self._retry.reset()
            if self._outage.began(now):
                self._say("%s store unreachable (%s); %s until it answers", self.store,
                          self.error, "requests it is needed for are admitted unchecked, and "
                          "counted," if self.open else "requests it is needed for are refused")
        else:
            self._retry.longer()
            quiet = self._outage.still(now)
            if quiet is not None:
                unchecked, refused = self._since(self._counts_said)
                self._say("%s store still unreachable (%s): %d admitted unchecked, %d refused "
                          "in the last %.0f s", self.store, self.error, unchecked, refused, quiet)
        return self._retry.delay

    def worked(self) -> None:
        if self.up:
            return
        now = self._clock()
        lasted = self._outage.ended(now)
        if lasted is not None:
            unchecked, refused = self._since(self._counts_down)
            self._say("%s store answers again after %.1f s; %d admitted unchecked and %d "
                      "refused meanwhile", self.store, lasted, unchecked, refused)
        self.error = None
        self._flip(True, now)

    def state(self) -> dict[str, object]:
        return {"store": self.store, "mode": self.mode, "fail_mode": self.fail_mode,
                "up": self.up, "since": self.since, "error": self.error,
                "failures": self.failures, "admitted_unchecked": self.admitted_unchecked,
                "refused_unavailable": self.refused_unavailable}

    async def until(self, up: bool) -> None:
        """Returns once the store is up (or down): for tests and readiness waits."""
        while self.up != up:
            await self._flipped.wait()

    def _flip(self, up: bool, now: float) -> None:
        self.up, self.since = up, now
        self._flipped.set()
        self._flipped = asyncio.Event()

    def _since(self, counts: tuple[int, int]) -> tuple[int, int]:
        unchecked, refused = counts
        return self.admitted_unchecked - unchecked, self.refused_unavailable - refused

    def _say(self, message: str, *args: object) -> None:
        self._counts_said = (self.admitted_unchecked, self.refused_unavailable)
        self._log.warning("limits: " + message, *args)


async def run_turns(turn: Callable[[], Awaitable[float]], wake: asyncio.Event) -> None:
    """A background loop's shape, until cancelled: do a turn, then wait the delay it asks for
    (none: go again at once), or less when `wake` is set."""
    while True:
        delay = await turn()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wake.wait()
