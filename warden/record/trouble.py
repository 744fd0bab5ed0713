"""A failure that can repeat on every batch (a full disk, a database that is down), told in the
log with backoff (warden/backoff.py: one line when it starts, a summary at most once a minute
while it lasts, one line when it ends), with the records it dropped. Never one line per
batch, and no traceback for an expected failure (its message says it all)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from warden.backoff import Outage, Throttle


class Trouble:
    """One kind of failure, told with backoff. A failure that comes and goes within a
    minute (`backoff.SUMMARY_EVERY`) is summarised, not told each time. `failing(None, n)` is
    a bug (the traceback is logged); an error may also be given as its reason, in words."""

    def __init__(self, log: logging.Logger, what: str,
                 clock: Callable[[], float] = time.monotonic,
                 hints: dict[int, str] | None = None):
        """`what` starts every line; `hints`: what to add to the first line, by errno."""
        self._log = log
        self.what = what
        self._clock = clock
        self._hints = hints or {}
        self._outage = Outage()
        self._noted = Throttle()          # failures that lost nothing
        self._dropped = 0                 # since the failure began
        self._unsaid = 0                  # dropped since the log last spoke

    def failing(self, error: Exception | str | None, dropped: int) -> None:
        now = self._clock()
        self._unsaid += dropped
        outage = self._outage
        if outage.since is None:
            self._dropped = dropped
            if outage.began(now):
                hint = self._hints.get(getattr(error, "errno", None) or 0, "")
                self._say("cannot write (%s); records are dropped, and counted, until it can"
                          + hint.replace("%", "%%"), error)
            return
        self._dropped += dropped
        quiet = outage.still(now)
        if quiet is not None:
            self._say("still cannot write (%s): %d records dropped in the last %.0f s",
                      error, self._unsaid, quiet)

    def working(self) -> None:
        if self._outage.since is None:
            return
        lasted = self._outage.ended(self._clock())
        if lasted is not None:
            self._log.warning("%s: writing again after %.1f s; %d records were dropped meanwhile",
                              self.what, lasted, self._dropped)
            self._unsaid = 0

    def noted(self, what: str, error: Exception | str) -> None:
        """A failure that lost no record (a rotated file left uncompressed)."""
        if self._noted.ready(self._clock()):
            self._log.warning("%s: %s (%s)", self.what, what, reason(error))

    def _say(self, message: str, error: Exception | str | None, *args: object) -> None:
        self._unsaid = 0
        if error is None:
            self._log.exception("%s: " + message, self.what, "a bug", *args)
        else:
            self._log.warning("%s: " + message, self.what, reason(error), *args)


def reason(error: Exception | str) -> str:
    """An error in a few words: as given, an OSError's own, else its class and message."""
    if isinstance(error, str):
        return error
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    return f"{error.__class__.__name__}: {text}" if text else error.__class__.__name__
