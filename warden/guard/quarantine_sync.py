"""Keeps the quarantine's store and its mirror in step, and says when the store is down.

Rules:
- every change (a strike, a block, a clear, an expiry) goes to the mirror first, so this
  gateway acts on it at once whatever the store does; then to the store, in order, from a
  bounded queue (`MAX_PENDING`: past it the oldest change is dropped, counted and logged);
- a store that fails (Redis unreachable or hanging: each call is bounded by its timeout; a
  file that cannot be written) is *down*: the queue waits, retried with a backoff that doubles
  up to `MAX_BACKOFF`; told in the log with backoff (warden/backoff.py): one line when it
  goes down, one a minute while it stays down, one when it is back (with how many changes it
  took then);
- the mirror is (re-)read from the store only once this gateway's queue is empty (it would
  otherwise undo changes the store has not seen yet);
- while the store is down, `fail: open` serves with the mirror (what this gateway knows:
  its own strikes, and the others' as last read); `fail: closed` refuses proxied requests
  with 503 until it is back (`refusing`), for fleets that would rather stop than risk it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from warden.backoff import Backoff, Outage
from warden.errors import error_text
from warden.guard.quarantine import Change, Entry, Quarantine

log = logging.getLogger("warden.quarantine")

MAX_PENDING = 10_000
MAX_BACKOFF = 30.0


class QuarantineSync:
    def __init__(self, quarantine: Quarantine, *, store: str, shared: bool, refresh: float,
                 timeout: float, fail: str = "open"):
        self.quarantine = quarantine
        self.store_name = store
        self.shared = shared            # other replicas write it too: re-read it
        self.refresh = refresh
        self.timeout = timeout
        self.fail = fail
        self.up = True
        self.loaded = False
        self.error: str | None = None
        self._outage = Outage(tell_every_start=True)   # down since: wall clock
        self.pending: deque[tuple[str, Change | None]] = deque()
        self.dropped = 0                        # changes the store never got
        self.failures = 0                       # failed store calls
        self.expired = 0
        self._backoff = Backoff(refresh, MAX_BACKOFF)   # the pause while down
        self._wake = asyncio.Event()

    @property
    def down_since(self) -> float | None:
        return self._outage.since

    @property
    def refusing(self) -> bool:
        return self.fail == "closed" and not self.up

    # -- changes ---------------------------------------------------------------------------

    def submit(self, fingerprint: str, change: Change) -> Entry | None:
        entry = self.quarantine.apply(fingerprint, change)
        self._queue(fingerprint, change)
        return entry

    def clear(self, fingerprints: list[str]) -> None:
        """Entries a probe cleared (the mirror now, the store next)."""
        self.quarantine.forget(fingerprints)
        for fingerprint in fingerprints:
            self._queue(fingerprint, None)

    def _queue(self, fingerprint: str, change: Change | None) -> None:
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("quarantine: %d changes were never written to the %s store (it "
                          "has been down since %s); this gateway still acts on them",
                          self.dropped, self.store_name, _when(self.down_since))
        self.pending.append((fingerprint, change))
        self._wake.set()

    async def lift(self, fingerprints: list[str] | None) -> list[str]:
        """An operator's lift (None: all), written to the store before it is answered; a
        store that fails raises (the admin API says so) and nothing is lifted."""
        quarantine = self.quarantine
        asked = None if fingerprints is None else quarantine.with_pairs(fingerprints)
        try:
            async with asyncio.timeout(self.timeout):
                lifted = await quarantine.store.lift(asked)
        except Exception as e:
            self._down(e)
            raise
        local = list(quarantine.entries) if asked is None else asked
        gone = [fp for fp in local if fp in quarantine.entries]
        quarantine.forget(gone)
        lifted_here = set(gone)
        self.pending = deque((fp, c) for fp, c in self.pending if fp not in lifted_here)
        return sorted(set(lifted) | set(gone), key=lambda fp: (fp[0] != "x", fp))

    # -- the loop --------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the store at start; a store that is down does not keep the gateway down."""
        try:
            await self.quarantine.load()
            self.loaded = True
        except Exception as e:
            self._down(e)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.refresh if self.up else self._backoff.delay):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.sync_once()

    async def sync_once(self) -> None:
        quarantine = self.quarantine
        try:
            written = 0
            while self.pending:
                fingerprint, change = self.pending[0]
                if change is None:
                    await quarantine.store.lift([fingerprint])
                else:
                    await quarantine.store.change(fingerprint, change)
                self.pending.popleft()
                written += 1
            for fingerprint in quarantine.expiring():
                self.expired += 1
                quarantine.forget([fingerprint])
                now = quarantine.clock()
                await quarantine.store.change(fingerprint, lambda e, now=now: _unless_expired(
                    e, now))
            if not self.loaded:  # (down at start; what was struck since is in it now)
                await quarantine.load()
                self.loaded = True
            elif self.shared:
                await quarantine.refresh()
        except Exception as e:
            self._down(e)
            return
        lasted = self._outage.ended(time.time())
        if lasted is not None:
            log.warning("quarantine: the %s store is back after %.0fs; %d changes written",
                        self.store_name, lasted, written)
        self.up, self.error = True, None
        self.quarantine.refusing = False
        self._backoff.reset()

    def _down(self, error: BaseException) -> None:
        self.failures += 1
        self.error = error_text(error, self.timeout)
        now = time.time()
        if self.up:
            self.up = False
            self.quarantine.refusing = self.refusing
            if self._outage.began(now):  # (always: each outage's start is told)
                log.error("quarantine: the %s store failed (%s); %s", self.store_name,
                          self.error, "refusing requests until it is back (fail: closed)"
                          if self.fail == "closed" else "serving with what this gateway "
                          "knows (fail: open); retrying")
        elif self._outage.still(now) is not None:
            log.error("quarantine: the %s store is still down since %s (%s); %d changes "
                      "wait", self.store_name, _when(self.down_since), self.error,
                      len(self.pending))
        self._backoff.longer()

    def state(self) -> dict:
        return {"store": self.store_name, "up": self.up, "error": self.error,
                "down_since": self.down_since, "fail": self.fail,
                "pending": len(self.pending), "dropped": self.dropped}


def _unless_expired(entry: Entry | None, now: float) -> Entry | None:
    return None if entry is None or entry.expired(now) else entry


def _when(wall: float | None) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + "Z" if wall else "?"
