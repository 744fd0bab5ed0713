"""Quarantine: fingerprints implicated in an engine's death are held back.

When an incident is written (forensics/incidents), its implicated suspects' fingerprints are
struck: the requests in flight at the death and those with something unusual in their
parameters (at most `max_implicated`, best ranked first). Ordinary requests merely sent in the
seconds before are not: their SDKs retry them after the 500, and they are innocent far more
often than not. An `exact` fingerprint is struck for each; a `params` one (the shape without
the text) only for those whose parameters are unusual, since an ordinary shape matches
everyone's traffic.

One strike holds a fingerprint: its requests go only to a canary backend (`canary: true`), or
are refused with a 403 that names the incident. Two strikes (two deaths, on any backends)
block it fleet-wide, canary included. The same death seen by several gateway replicas is one
strike: a strike counts only if no incident on the same backend within `SAME_DEATH` seconds is
on the entry already.

The hot path reads only `entries`, a local mirror of the store (memory + a JSON file, or Redis
shared by all replicas, re-read when its version moves); writes go to the store first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from warden.errors import ClientError
from warden.guard.fingerprint import exact_fingerprint, params_fingerprint

log = logging.getLogger("warden.quarantine")

SAME_DEATH = 30.0   # seconds: incidents on one backend this close are one death


@dataclass
class Entry:
    fingerprint: str
    kind: str                       # "exact" | "params"
    strikes: int = 0
    incidents: list[dict] = field(default_factory=list)  # {id, backend, at (unix seconds)}
    model: str | None = None
    endpoint: str | None = None
    reasons: list[str] = field(default_factory=list)      # what was unusual, if anything

    @property
    def blocked(self) -> bool:
        return self.strikes >= 2

    def as_dict(self) -> dict:
        return {**asdict(self), "blocked": self.blocked}

    @classmethod
    def of(cls, data: dict) -> Entry:
        data = {k: v for k, v in data.items() if k != "blocked"}
        return cls(**data)

    def strike(self, incident: dict) -> bool:
        """Add the incident; True if it is a new death (a new strike)."""
        if any(seen["id"] == incident["id"] for seen in self.incidents):
            return False
        same_death = any(seen["backend"] == incident["backend"]
                         and abs(seen["at"] - incident["at"]) <= SAME_DEATH
                         for seen in self.incidents)
        self.incidents.append(incident)
        if not same_death:
            self.strikes += 1
        return not same_death


class QuarantineStore(Protocol):
    async def load(self) -> dict[str, Entry]: ...
    async def strike(self, fingerprint: str, kind: str, incident: dict,
                     sample: dict) -> Entry: ...
    async def lift(self, fingerprints: list[str] | None) -> list[str]: ...
    async def version(self) -> int: ...
    async def close(self) -> None: ...


class QuarantineHeld(ClientError):
    """A request whose fingerprint is in quarantine, refused."""

    status = 403
    code = "quarantined"

    def __init__(self, entry: Entry):
        incident = entry.incidents[-1]["id"] if entry.incidents else "unknown"
        state = "blocked fleet-wide (implicated in two engine deaths)" if entry.blocked \
            else "held (implicated in an engine death; no canary backend is configured)"
        super().__init__(
            f"This request matches fingerprint {entry.fingerprint}, {state}; last incident "
            f"{incident}. An operator can lift it: warden quarantine lift "
            f"{entry.fingerprint}")
        self.entry = entry


class Quarantine:
    def __init__(self, store: QuarantineStore, max_implicated: int = 16):
        self.store = store
        self.max_implicated = max_implicated
        self.entries: dict[str, Entry] = {}   # the mirror read per request
        self._has_params = False
        self._version = -1

    def match(self, body: dict) -> Entry | None:
        """The quarantine entry this body falls under, if any (called only while there are
        entries)."""
        entry = self.entries.get(exact_fingerprint(body))
        if entry is None and self._has_params:
            entry = self.entries.get(params_fingerprint(body))
        return entry

    def _mirror(self, entries: dict[str, Entry]) -> None:
        self.entries = entries
        self._has_params = any(e.kind == "params" for e in entries.values())

    async def load(self) -> None:
        self._version = await self.store.version()
        self._mirror(await self.store.load())

    async def refresh(self) -> None:
        """Re-read the store if another replica changed it."""
        version = await self.store.version()
        if version != self._version:
            self._version = version
            self._mirror(await self.store.load())

    async def implicate(self, incident: dict) -> list[Entry]:
        """Strike the fingerprints of an incident's implicated suspects (see the module)."""
        ref = {"id": incident["id"], "backend": incident["backend"],
               "at": incident.get("at_unix", 0.0)}
        struck: list[Entry] = []
        for suspect in implicated(incident.get("suspects", ()), self.max_implicated):
            prints = suspect.get("fingerprints") or {}
            sample = {"model": suspect.get("model"), "endpoint": suspect.get("endpoint"),
                      "reasons": suspect.get("unusual", [])}
            kinds = ["exact", "params"] if suspect.get("unusual") else ["exact"]
            for kind in kinds:
                if prints.get(kind):
                    struck.append(await self.store.strike(prints[kind], kind, ref, sample))
        entries = dict(self.entries)
        entries.update((e.fingerprint, e) for e in struck)
        self._mirror(entries)
        if struck:
            log.warning("quarantine: incident %s struck %d fingerprints (%d blocked)",
                        ref["id"], len(struck), sum(e.blocked for e in struck))
        return struck

    async def lift(self, fingerprints: list[str] | None) -> list[str]:
        """Lift these fingerprints (None: all); the ones that were there."""
        lifted = await self.store.lift(fingerprints)
        self._mirror({fp: e for fp, e in self.entries.items() if fp not in lifted})
        return lifted

    def listing(self) -> list[dict]:
        return [e.as_dict() for e in sorted(self.entries.values(),
                                            key=lambda e: (-e.strikes, e.fingerprint))]


def implicated(suspects: Iterable[dict], limit: int) -> list[dict]:
    """The suspects an incident holds responsible: in flight at the death, or unusual."""
    chosen = [s for s in suspects if s.get("in_flight") or s.get("unusual")]
    return chosen[:limit]
