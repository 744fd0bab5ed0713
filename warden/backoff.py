"""Failures that repeat, told in the log and retried with backoff: the rules every part that
depends on something that can be down follows (the limits' Redis: tenancy/health.py; the key
store's PostgreSQL: tenancy/key_store.py; the quarantine's store: guard/quarantine_sync.py;
the flight recorder's disk and its PostgreSQL sink: record/trouble.py, record/postgres.py).

- Told (`Outage`): one line when a failure begins, a summary at most once every
  `SUMMARY_EVERY` while it lasts, one line when it ends. Something that is down fails on
  every try (every batch, every request, every retry): a line each time would flood the log
  and bury the one that matters, that it began. A failure that begins again less than
  `SUMMARY_EVERY` after the log last spoke of one (a store that flaps) is summarised, not told
  afresh, unless the user asks for every beginning to be told. (`Throttle`: the same "at most
  once every" for lines that are not an outage's: the recorder's losses, request bodies
  refused by edge/budget.py, a rotated file left uncompressed.)
- Retried (`Backoff`): the pause before the next try doubles, from a first pause up to a
  last, and starts over once a try works: a hiccup is retried at once, a long outage is not
  hammered by every gateway of a fleet, and recovery needs no restart.

Each takes the time (`now`) from its caller, who says which clock (monotonic or wall): no
clock is read here, so that tests drive them with any numbers. Interpreted (not in
warden/compiled.py): it runs per failure, per flush or per refused body, never per request;
compiled callers (record/recorder.py, edge/budget.py) call it as they call any Python class.
"""

from __future__ import annotations

import math
from typing import Final

# How often, at most, a failure that goes on is summarised in the log.
SUMMARY_EVERY: Final = 60.0


class Throttle:
    """Lets a line through at most once every `every` seconds; the first at once."""

    def __init__(self, every: float = SUMMARY_EVERY):
        self.every = every
        self.said_at = -math.inf   # when a line last went through

    def ready(self, now: float) -> bool:
        """True, and the line counts as said, if `every` has passed since the last one."""
        if now - self.said_at < self.every:
            return False
        self.said_at = now
        return True


class Outage(Throttle):
    """One kind of failure, told with backoff. The caller keeps the words (and counts what
    was lost meanwhile, from one line to the next); this decides when to speak:
    `began` at the first failure after working, `still` at each one after, `ended` at the
    first success after failing."""

    def __init__(self, every: float = SUMMARY_EVERY, *, tell_every_start: bool = False):
        """`tell_every_start`: tell each beginning, however soon after the last line."""
        super().__init__(every)
        self.tell_every_start = tell_every_start
        self.since: float | None = None   # failing since (None: working)
        self.told = False                 # the log spoke of this failure

    def began(self, now: float) -> bool:
        """A failure begins: True to tell it now."""
        self.since = now
        self.told = self.ready(now) or self.tell_every_start
        if self.told:
            self.said_at = now
        return self.told

    def still(self, now: float) -> float | None:
        """The failure goes on: the seconds since the log last spoke of it if a summary of
        them is due now, else None."""
        quiet = now - self.said_at
        if not self.ready(now):
            return None
        self.told = True
        return quiet

    def ended(self, now: float) -> float | None:
        """Working again: how long the failure lasted if the log is to say so (it spoke of
        this failure), else None (also when nothing was failing)."""
        since, self.since = self.since, None
        if since is None or not self.told:
            return None
        self.said_at = now
        return now - since


class Backoff:
    """The pause before the next try: `delay`, `first` at the start, doubled by `longer` (a
    try failed) up to `last`, `first` again after `reset` (a try worked)."""

    def __init__(self, first: float, last: float):
        self.first = first
        self.last = last
        self.delay = first

    def longer(self) -> float:
        """Another try failed: the pause doubles, up to `last`; returns it."""
        self.delay = min(self.delay * 2, self.last)
        return self.delay

    def reset(self) -> float:
        """A try worked (or a new outage begins): the pause is `first` again; returns it."""
        self.delay = self.first
        return self.delay
