"""Quarantine: fingerprints implicated in an engine's death, held until cleared.

When an incident opens (forensics/incidents), its implicated suspects' fingerprints are struck:
the requests in flight at the death and those with something unusual in their parameters (at
most `max_implicated`, best ranked first). Ordinary requests merely sent in the seconds before
are not: their SDKs retry them after the 500, and they are innocent far more often than not.
An `exact` fingerprint is struck for each; a `params` one (the shape without the text) only for
those whose parameters are unusual, since an ordinary shape matches everyone's traffic.

An entry is, by what the death looked like:
- `held`: the engine said it died (vLLM's engine-dead 500, an error event in a stream, a
  `/health` answering 5xx). Its requests reach no engine but, as one probe at a time, the
  engine that died once it is healthy again (or a `canary` backend).
- `watched`: the connection simply vanished (reset, refused: a process killed from outside,
  the OOM killer, a deploy). Its requests go, one probe at a time, to one engine (the one that
  died if it is back, else the one the fingerprint hashes to, the same for every replica).
- `blocked`: a probe died with it, or it was in flight at two distinct deaths. Refused
  fleet-wide until lifted (or `block_for`, when set).
A probe that survives clears the entries its request matches (guard/probation). Entries that
are not blocked expire after `hold_for`. The same death seen by several gateway replicas is one
strike: a strike counts only if no incident on the same backend within `SAME_DEATH` seconds is
on the entry already.

The hot path reads only `entries`, a local mirror of the store (memory + a JSON file, or Redis
shared by all replicas, re-read when its version moves). The mirror takes every change first;
a store that cannot be written is retried (guard/quarantine_sync), never silently dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from warden.errors import ClientError, NoBackendAvailable
from warden.guard.fingerprint import exact_fingerprint, params_fingerprint

log = logging.getLogger("warden.quarantine")

SAME_DEATH = 30.0   # seconds: incidents on one backend this close are one death
HELD, WATCHED, BLOCKED = "held", "watched", "blocked"


@dataclass
class Entry:
    fingerprint: str
    kind: str                       # "exact" | "params"
    strikes: int = 0
    # {id, backend, at (unix seconds), engine_crash}
    incidents: list[dict] = field(default_factory=list)
    model: str | None = None
    endpoint: str | None = None
    reasons: list[str] = field(default_factory=list)      # what was unusual, if anything
    pair: str | None = None         # the same request's other fingerprint
    engine_crash: bool = False      # a death it was in carried the engine's own signature
    failed_probe: dict | None = None  # {backend, at, how}: a probe of it died
    expires: float | None = None    # unix seconds; None: until lifted

    @property
    def blocked(self) -> bool:
        return self.strikes >= 2 or self.failed_probe is not None

    @property
    def state(self) -> str:
        return BLOCKED if self.blocked else HELD if self.engine_crash else WATCHED

    @property
    def died_on(self) -> frozenset[str]:
        return frozenset(seen["backend"] for seen in self.incidents)

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def as_dict(self) -> dict:
        return {**asdict(self), "blocked": self.blocked, "state": self.state}

    @classmethod
    def of(cls, data: dict) -> Entry:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def strike(self, incident: dict) -> bool:
        """Add the incident; True if it is a new death (a new strike). An incident already
        on the entry may still upgrade it to `engine_crash` (its later signals showed it)."""
        crash = bool(incident.get("engine_crash"))
        for seen in self.incidents:
            if seen["id"] == incident["id"]:
                seen["engine_crash"] = seen.get("engine_crash") or crash
                self.engine_crash = self.engine_crash or crash
                return False
        same_death = any(seen["backend"] == incident["backend"]
                         and abs(seen["at"] - incident["at"]) <= SAME_DEATH
                         for seen in self.incidents)
        self.incidents.append(incident)
        self.engine_crash = self.engine_crash or crash
        if not same_death:
            self.strikes += 1
        return not same_death


@dataclass(frozen=True)
class Policy:
    """How long entries last (seconds; 0: until lifted)."""

    hold_for: float = 600.0
    block_for: float = 0.0

    def until(self, entry: Entry, now: float) -> float | None:
        duration = self.block_for if entry.blocked else self.hold_for
        return now + duration if duration > 0 else None


Change = Callable[[Entry | None], Entry | None]


class QuarantineStore(Protocol):
    """Where entries live. `change` applies `fn` to the stored entry atomically (a replica's
    concurrent change is not lost) and stores what it returns (None: deletes it)."""

    async def load(self) -> dict[str, Entry]: ...
    async def change(self, fingerprint: str, fn: Change) -> Entry | None: ...
    async def lift(self, fingerprints: list[str] | None) -> list[str]: ...
    async def version(self) -> int: ...
    async def close(self) -> None: ...


class QuarantineHeld(ClientError):
    """A request whose fingerprint is in quarantine, refused."""

    status = 403
    code = "quarantined"

    def __init__(self, entry: Entry, admin_url: str):
        incident = entry.incidents[-1]["id"] if entry.incidents else "unknown"
        if entry.blocked:
            state = "blocked fleet-wide (a probe of it died)" if entry.failed_probe \
                else "blocked fleet-wide (implicated in two engine deaths)"
        else:
            died = ", ".join(sorted(entry.died_on)) or "its engine"
            state = (f"held (in flight when an engine died; it is retried on {died} once "
                     "that is healthy again, and then let through if it survives)")
        lift = " ".join(f for f in (entry.fingerprint, entry.pair) if f)
        super().__init__(
            f"This request matches fingerprint {entry.fingerprint}, {state}; last incident "
            f"{incident}. An operator can lift it: warden quarantine lift --url {admin_url} "
            f"{lift}")
        self.entry = entry


class QuarantineUnavailable(NoBackendAvailable):
    """The quarantine's store is down and it fails closed: nothing is let through."""

    code = "quarantine_unavailable"

    def __init__(self, why: str):
        super().__init__(f"the quarantine's store is unreachable ({why}) and this gateway "
                         "fails closed: no request is let through until it is back")
        self.headers = b"retry-after: 5\r\n"


def body_fingerprints(body: dict) -> tuple[str, str]:
    return exact_fingerprint(body), params_fingerprint(body)


class Quarantine:
    def __init__(self, store: QuarantineStore, max_implicated: int = 16,
                 policy: Policy | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.max_implicated = max_implicated
        self.policy = policy if policy is not None else Policy()
        self.clock = clock
        self.entries: dict[str, Entry] = {}   # the mirror read per request
        self.admin_url = "http://127.0.0.1:8000"  # the gateway's, once it listens
        self.refusing = False   # its store is down and it fails closed (quarantine_sync)
        self._has_params = False
        self._version = -1

    def match(self, body: dict) -> Entry | None:
        """The live quarantine entry this body falls under, if any (called only while there
        are entries)."""
        entry = self.entries.get(exact_fingerprint(body))
        if (entry is None or entry.expired(self.clock())) and self._has_params:
            entry = self.entries.get(params_fingerprint(body))  # (a live shape entry holds)
        if entry is not None and entry.expired(self.clock()):
            return None  # (removed from the store by `expire`)
        return entry

    def _mirror(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self._has_params = any(e.kind == "params" for e in entries.values())

    def _put(self, entry: Entry | None, fingerprint: str) -> None:
        entries = dict(self.entries)
        if entry is None:
            entries.pop(fingerprint, None)
        else:
            entries[fingerprint] = entry
        self._mirror(entries)

    async def load(self) -> None:
        self._version = await self.store.version()
        self._mirror(await self.store.load())

    async def refresh(self) -> None:
        """Re-read the store if another replica changed it."""
        version = await self.store.version()
        if version != self._version:
            self._version = version
            self._mirror(await self.store.load())

    def strikes_of(self, incident: dict) -> list[tuple[str, Change]]:
        """The changes an incident makes: one per fingerprint of its implicated suspects
        (see the module). Applied to the mirror at once by `apply`, then to the store."""
        ref = {"id": incident["id"], "backend": incident["backend"],
               "at": incident.get("at_unix", 0.0),
               "engine_crash": bool(incident.get("engine_crash"))}
        changes: list[tuple[str, Change]] = []
        for suspect in implicated(incident.get("suspects", ()), self.max_implicated):
            prints = suspect.get("fingerprints") or {}
            kinds = ["exact", "params"] if suspect.get("unusual") else ["exact"]
            for kind in kinds:
                fingerprint = prints.get(kind)
                if not fingerprint:
                    continue
                pair = prints.get("params" if kind == "exact" else "exact") \
                    if len(kinds) == 2 else None
                changes.append((fingerprint, self._striker(fingerprint, kind, pair, ref,
                                                           suspect)))
        return changes

    def _striker(self, fingerprint: str, kind: str, pair: str | None, ref: dict,
                 suspect: dict) -> Change:
        policy, now = self.policy, ref["at"] or self.clock()

        def strike(entry: Entry | None) -> Entry:
            if entry is None or entry.expired(self.clock()):
                entry = Entry(fingerprint, kind, model=suspect.get("model"),
                              endpoint=suspect.get("endpoint"), pair=pair,
                              reasons=list(suspect.get("unusual") or []))
            entry.strike(dict(ref))
            entry.expires = policy.until(entry, now)
            return entry
        return strike

    def block_of(self, fingerprint: str, probe: dict) -> Change:
        """The change a failed probe makes: its entry blocked."""
        policy = self.policy

        def block(entry: Entry | None) -> Entry | None:
            if entry is None:
                return None  # lifted meanwhile: the operator's word stands
            entry.failed_probe = probe
            entry.expires = policy.until(entry, probe["at"])
            return entry
        return block

    def apply(self, fingerprint: str, change: Change) -> Entry | None:
        """Apply a change to the mirror now (the store follows: quarantine_sync)."""
        current = self.entries.get(fingerprint)
        entry = change(Entry.of(asdict(current)) if current is not None else None)
        self._put(entry, fingerprint)
        return entry

    def forget(self, fingerprints: Iterable[str]) -> None:
        """Drop these from the mirror (lifted, cleared or expired; the store follows)."""
        gone = set(fingerprints)
        if gone & self.entries.keys():
            self._mirror({fp: e for fp, e in self.entries.items() if fp not in gone})

    def with_pairs(self, fingerprints: Iterable[str]) -> list[str]:
        """These fingerprints and their entries' pairs: lifting a request lifts both of its
        fingerprints."""
        chosen = list(dict.fromkeys(fingerprints))
        for fingerprint in list(chosen):
            entry = self.entries.get(fingerprint)
            if entry is not None and entry.pair and entry.pair not in chosen:
                chosen.append(entry.pair)
        return chosen

    def expiring(self) -> list[str]:
        now = self.clock()
        return [fp for fp, entry in self.entries.items() if entry.expired(now)]

    def listing(self) -> list[dict]:
        return [e.as_dict() for e in sorted(self.entries.values(),
                                            key=lambda e: (-e.strikes, e.fingerprint))]

    def counts(self) -> dict[str, int]:
        counts = {HELD: 0, WATCHED: 0, BLOCKED: 0}
        for entry in self.entries.values():
            counts[entry.state] += 1
        return counts


def implicated(suspects: Iterable[dict], limit: int) -> list[dict]:
    """The suspects an incident holds responsible: in flight at the death, or unusual."""
    chosen = [s for s in suspects if s.get("in_flight") or s.get("unusual")]
    return chosen[:limit]
