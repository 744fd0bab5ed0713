"""Probation: how a request in quarantine gets back in, without exposing a second engine.

Rules (guard/quarantine says what held, watched and blocked mean):
- one probe at a time per backend, in this gateway: were two probes in flight on an engine
  that one of them kills, the innocent one would be blocked with the guilty;
- a `held` entry is probed only on a backend it died on, once that is alive again (the
  incident detector has seen it answer since), or on a `canary`; with neither, refused (403);
- a `watched` entry is probed on one backend: one it died on if that is alive again, else the
  one its fingerprint hashes to among those that can take it (rendezvous hashing: every
  replica picks the same one, so a silent killer reaches at most one more engine);
- other requests of the entry wait at the gateway (at most `max_waiting` in all, each at most
  `wait` seconds; then 503 with Retry-After) for the probe's outcome: it survived (answered
  2xx-4xx with no death signal): the entries its body matches are cleared and the waiters go
  on; it died with its engine: blocked, and they get 403; neither (the client left, nothing
  was sent): the next waiter may probe.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from warden.errors import NoBackendAvailable, WardenError
from warden.fleet.backend import Backend
from warden.guard.quarantine import Entry, Quarantine, QuarantineHeld, body_fingerprints
from warden.guard.quarantine_sync import QuarantineSync

log = logging.getLogger("warden.quarantine")

SURVIVED, FAILED, INCONCLUSIVE = "survived", "failed", "inconclusive"


@dataclass
class ProbeTicket:
    """What a probe request carries to its end."""

    entry: str                      # the entry it was let through for
    clears: tuple[str, ...]         # the entries its body matches: cleared if it survives
    backend: str


@dataclass
class Decision:
    """What the quarantine does with one request that matches an entry."""

    entry: Entry
    refusal: WardenError | None = None
    probe: ProbeTicket | None = None     # send it, only to `probe.backend`
    wait: bool = False                   # park it until a probe's outcome


@dataclass
class Waiter:
    resume: Callable[[], None]
    timer: asyncio.TimerHandle | None = None
    done: bool = field(default=False)


class Probation:
    def __init__(self, quarantine: Quarantine, sync: QuarantineSync,
                 is_down: Callable[[str], bool], wait: float = 10.0, max_waiting: int = 256):
        """`is_down(backend)`: the incident detector holds it dead (not seen alive since)."""
        self.quarantine = quarantine
        self.sync = sync
        self._is_down = is_down
        self.wait = wait
        self.max_waiting = max_waiting
        self._probing: dict[str, ProbeTicket] = {}   # backend -> its probe in flight
        self._waiting: list[Waiter] = []
        self.probes: Counter[str] = Counter()        # outcome -> probes
        self.waits: Counter[str] = Counter()         # released | refused | timed_out | full
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def decide(self, entry: Entry, body: dict, backends: Sequence[Backend]) -> Decision:
        if entry.blocked:
            return Decision(entry, refusal=QuarantineHeld(entry, self.quarantine.admin_url))
        now = time.monotonic()
        alive = [b for b in backends if b.available(now) and not self._is_down(b.name)]
        died = entry.died_on
        if entry.engine_crash:
            choices = [b for b in alive if b.name in died or b.canary]
        else:
            choices = [b for b in alive if b.name in died] or _hashed(entry.fingerprint, alive)
        if not choices:
            refusal: WardenError = QuarantineHeld(entry, self.quarantine.admin_url) \
                if entry.engine_crash else NoBackendAvailable(
                    "no backend can take a probe of this request now (it was in flight when "
                    "an engine died)")
            return Decision(entry, refusal=refusal)
        for backend in choices:
            if backend.name not in self._probing:
                held = self.quarantine.entries
                clears = tuple(fp for fp in body_fingerprints(body) if fp in held)
                ticket = ProbeTicket(entry.fingerprint, clears, backend.name)
                self._probing[backend.name] = ticket
                log.info("quarantine: probing %s on backend %s", entry.fingerprint,
                         backend.name)
                return Decision(entry, probe=ticket)
        return Decision(entry, wait=True)

    def park(self, resume: Callable[[], None], refuse: Callable[[WardenError], None],
             deadline: float | None = None) -> float:
        """Hold a request until a probe's outcome: then `resume()` (decide again), or
        `refuse(error)` when the wait is over or there is no room to wait. `deadline` (the
        loop's time): a request parked again after a resume keeps its first one, so no
        request waits longer than `wait` in all. Returns the deadline."""
        if len(self._waiting) >= self.max_waiting or self._loop is None:
            self.waits["full"] += 1
            refuse(_busy(f"{len(self._waiting)} requests already wait for probes"))
            return 0.0
        if deadline is None:
            deadline = self._loop.time() + self.wait
        waiter = Waiter(resume)

        def timed_out() -> None:
            if self._finish(waiter):
                self.waits["timed_out"] += 1
                refuse(_busy(f"no probe outcome within {self.wait:g}s"))
        waiter.timer = self._loop.call_at(deadline, timed_out)
        self._waiting.append(waiter)
        return deadline

    def _finish(self, waiter: Waiter) -> bool:
        if waiter.done:
            return False
        waiter.done = True
        if waiter.timer is not None:
            waiter.timer.cancel()
        self._waiting.remove(waiter)
        return True

    def ended(self, ticket: ProbeTicket, outcome: str, how: str) -> None:
        """A probe's exchange ended: `outcome` is SURVIVED, FAILED or INCONCLUSIVE."""
        if self._probing.get(ticket.backend) is ticket:
            del self._probing[ticket.backend]
        self.probes[outcome] += 1
        quarantine = self.quarantine
        if outcome == SURVIVED:
            log.warning("quarantine: %s survived its probe on %s; cleared %s", ticket.entry,
                        ticket.backend, ", ".join(ticket.clears))
            # Only the entries its request matched: an entry's pair (the other fingerprint
            # of the request that was struck) may be the killer's, which this one is not.
            self.sync.clear(list(ticket.clears))
        elif outcome == FAILED:
            log.warning("quarantine: the probe of %s died with backend %s (%s): blocked "
                        "fleet-wide", ticket.entry, ticket.backend, how)
            probe = {"backend": ticket.backend, "at": quarantine.clock(), "how": how}
            for fingerprint in quarantine.with_pairs([ticket.entry]):
                self.sync.submit(fingerprint, quarantine.block_of(fingerprint, probe))
        self._release()

    def _release(self) -> None:
        """Decide again for every waiter (in arrival order): each goes on, probes, waits
        on, or is refused — `resume` runs the admission's quarantine step again."""
        for waiter in list(self._waiting):
            if self._finish(waiter):
                self.waits["released"] += 1
                waiter.resume()


def _hashed(fingerprint: str, backends: Sequence[Backend]) -> list[Backend]:
    """The one backend this fingerprint hashes to (rendezvous: the same on every replica,
    and only its own fingerprints move when one leaves)."""
    if not backends:
        return []
    def weight(backend: Backend) -> bytes:
        return hashlib.blake2b(f"{fingerprint}|{backend.name}".encode(),
                               digest_size=8).digest()
    return [max(backends, key=weight)]


def _busy(why: str) -> WardenError:
    error = NoBackendAvailable(f"this request waits for a quarantine probe ({why}); retry "
                               "shortly", code="quarantine_probe_pending")
    error.headers = b"retry-after: 1\r\n"
    return error
