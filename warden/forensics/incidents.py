"""Incidents: a backend that was serving dies, and the requests that may have killed it.

Signals of a death, as vLLM dies (docs/real-vllm.md): a response cut mid-way or a
connection dropped before the answer, a 5xx carrying vLLM's engine-dead error
(`EngineCore encountered an issue`, `EngineDeadError`), an error event in a stream, a refused
connection. A signal from a backend that was alive opens an incident: every death is one,
however soon after the last (crash, restart, crash again). Signals during the next `settle`
seconds join it (the poison request's own 500 often arrives just after the streams it broke);
then the incident is ranked and written as one JSON file. A backend is alive once it has
answered: at start, its model list (discovery) or a request of ours; after a death, a passed
health check, a 2xx, or its counters starting again from zero. One that is dead, or was
never reached (down when the gateway started: refused connections, failed checks), is in
`down`: a signal from it is no new death.

An incident says whether the engine itself said it died (`engine_crash`: vLLM's engine-dead
5xx, an error event in a stream, `/health` answering 5xx) or its connections simply vanished
(reset, refused: a process killed from outside). The quarantine weighs the two differently.

Suspects: the requests in flight on the backend when it died, and those sent to it in the
`window` seconds before. Ranked by what is unusual in their parameters (`unusual`: a shape
known to kill engines outweighs everything), then by being sent in the last second before the
death, being in flight, and recency. Each names its audit id, so `warden audit show` and
`warden audit replay` take it from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from warden.fleet.recent import recent_exchanges
from warden.forensics.incident_files import write_incident
from warden.forensics.unusual import unusual
from warden.guard.fingerprint import fingerprints
from warden.record.render import iso_wall
from warden.stream.observer import Ending

if TYPE_CHECKING:
    from warden.exchange import Exchange

log = logging.getLogger("warden.incidents")

ENGINE_DEAD_MARKERS = (b"EngineCore encountered an issue", b"EngineDeadError",
                       b"EngineGenerateError")
# Death signals in the engine's own words (see `death_signal` and the health checker).
ENGINE_SIGNALS = ("engine-dead ", "engine error event")


class Incident:
    def __init__(self, backend: str, detected_by: str, trigger: str | None, at: float,
                 wall: float):
        self.backend = backend
        self.detected_by = detected_by
        self.trigger = trigger
        self.at = at                     # monotonic
        self.wall = wall
        self.id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(wall))}-{backend}"
        self.signals: list[dict] = [{"how": detected_by, "request": trigger, "after": 0.0}]
        self.suspects: dict[str, dict] = {}
        self.metrics: str | None = None      # the backend's /metrics as it died, if it answered
        self.metrics_error: str | None = "not scraped"
        self.engine_crash = is_engine_crash(detected_by)

    def as_record(self) -> dict:
        ranked = sorted(self.suspects.values(),
                        key=lambda s: (-s["score"], s["age"]))
        return {"id": self.id, "backend": self.backend, "at": iso_wall(self.wall),
                "at_unix": round(self.wall, 3),
                "detected_by": self.detected_by, "trigger": self.trigger,
                "engine_crash": self.engine_crash, "signals": self.signals, "suspects": ranked,
                "tenants": sorted({s["tenant"] for s in ranked if s.get("tenant")}),
                "last_metrics": f"metrics-{self.id}.txt" if self.metrics is not None
                else f"none ({self.metrics_error})"}


class IncidentDetector:
    def __init__(self, directory: str | Path, in_flight: Callable[[str], Iterable],
                 window: float = 10.0, settle: float = 2.0,
                 scrape: Callable[[str], Awaitable[str]] | None = None,
                 on_opened: Callable[[dict], None] | None = None):
        """`in_flight(backend)`: the exchanges now in flight on that backend; `scrape(backend)`:
        its `/metrics` text (tried once when it dies: a dying vLLM often still answers);
        `on_opened(record)`: told of each incident as soon as it opens, its suspects known
        (the quarantine: a client's automatic retry comes within a second)."""
        self.directory = Path(directory)
        self._in_flight = in_flight
        self._scrape = scrape
        self._on_opened = on_opened
        self.window = window
        self.settle = settle
        self.recent: dict[str, deque[Exchange]] = {}
        self._open: dict[str, Incident] = {}
        self.alive: set[str] = set()      # answered since start, or since their last death
        self.down: set[str] = set()       # dead, or down at start: not seen alive since
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scrapes: set[asyncio.Task[None]] = set()   # last metrics being read
        self.opened: dict[str, int] = {}  # incidents opened, by backend (for /metrics)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def recent_of(self, backend: str) -> deque[Exchange]:
        """Where the forwarder appends each exchange it sends to this backend (fleet.recent)."""
        recent = self.recent.get(backend)
        if recent is None:
            recent = self.recent[backend] = recent_exchanges()
        return recent

    def open_records(self) -> list[dict]:
        """The incidents still gathering signals (not yet written), as their records."""
        return [incident.as_record() for incident in self._open.values()]

    def counts(self) -> tuple[dict[str, int], int]:
        """Incidents opened by backend since the start, and how many are open now."""
        return self.opened, len(self._open)

    # -- signals ---------------------------------------------------------------------------

    def exchange_ended(self, relay, now: float) -> None:
        """Called for an exchange that did not end cleanly, got a 5xx, or ended on a
        backend that is down (forensics.listener filters: this is not per request)."""
        backend = relay.backend
        if backend is None:
            return
        how = death_signal(relay)
        if how is not None:
            self._signal(backend, how, relay, now)
        elif 200 <= relay.status < 300:
            self.alive_again(backend, "answered 2xx")

    def connect_failed(self, backend: str, now: float,
                       how: str = "connection refused") -> None:
        self._signal(backend, how, None, now)

    def restarted(self, backend: str, now: float, how: str) -> None:
        """Its counters went backwards: it died and is back. A death if it was alive; the
        end of one if it was down."""
        if backend in self.down:
            self.alive_again(backend, how)
        else:
            self._signal(backend, how, None, now)

    def alive_again(self, backend: str, how: str) -> None:
        """It answered as only a live engine does (a passed health check, a 2xx, counters
        started again): the next death signal is a new death. Not while its incident is
        open: a late answer from before the death proves nothing."""
        if backend in self._open:
            return
        if backend in self.down:
            self.down.discard(backend)
            log.info("backend %s is alive again (%s)", backend, how)
        self.alive.add(backend)

    def reachable(self, backend: str) -> None:
        """Its API server answered (discovery). Alive if it was never seen dead: a vLLM
        whose engine died may still list its models."""
        if backend not in self.down:
            self.alive.add(backend)

    def _signal(self, backend: str, how: str, relay, now: float) -> None:
        incident = self._open.get(backend)
        rid = relay.request_id.decode("latin-1") if relay is not None else None
        if incident is not None:
            incident.signals.append({"how": how, "request": rid,
                                     "after": round(now - incident.at, 6)})
            if rid is not None and rid in incident.suspects:
                incident.suspects[rid]["outcome"] = how
            if is_engine_crash(how) and not incident.engine_crash:
                incident.engine_crash = True  # its own words came after the first signal
                if self._on_opened is not None:
                    self._on_opened(incident.as_record())
            return
        if backend in self.down:
            return  # already dead (or down since start): not a new death
        if backend not in self.alive and relay is None:
            # Never seen answering, and no request of ours reached it: down at start.
            log.info("backend %s is down (%s); it was not seen alive: no incident", backend,
                     how)
            self.down.add(backend)
            return
        self.alive.discard(backend)
        self.down.add(backend)
        incident = Incident(backend, how, rid, now, time.time())
        self._open[backend] = incident
        self.opened[backend] = self.opened.get(backend, 0) + 1
        self._collect_suspects(incident, relay, now)
        if self._on_opened is not None:  # the suspects are final now: only outcomes change
            self._on_opened(incident.as_record())
        if self._scrape is not None and self._loop is not None:
            task = self._loop.create_task(self._last_metrics(incident))
            self._scrapes.add(task)
            task.add_done_callback(self._scrapes.discard)
        log.warning("incident %s: backend %s died (%s); %d suspects", incident.id, backend,
                    how, len(incident.suspects))
        if self._loop is not None:
            self._loop.call_later(self.settle, self._close, backend)
        else:
            self._close(backend)

    def _collect_suspects(self, incident: Incident, trigger, now: float) -> None:
        in_flight = list(self._in_flight(incident.backend))
        flying = {id(r) for r in in_flight}
        candidates = [r for r in self.recent_of(incident.backend)
                      if now - r.sent_at <= self.window or id(r) in flying]
        # Every request in flight is a suspect, however long ago it was sent: one pushed out
        # of the recent ones by later requests (a long prefill) is the likeliest killer.
        kept = {id(r) for r in candidates}
        candidates += [r for r in in_flight if id(r) not in kept]
        if trigger is not None and trigger not in candidates:
            candidates.append(trigger)
        for relay in candidates:
            suspect = suspect_of(relay, now, in_flight=id(relay) in flying or relay is trigger)
            if relay is trigger:
                suspect["outcome"] = incident.detected_by
            key, again = suspect["id"], 1
            while key in incident.suspects:   # (a client's id reused: both are suspects)
                again += 1
                key = f"{suspect['id']}#{again}"
            incident.suspects[key] = suspect

    async def _last_metrics(self, incident: Incident) -> None:
        try:
            async with asyncio.timeout(self.settle / 2):
                incident.metrics = await self._scrape(incident.backend)
        except Exception as e:  # dead is dead: note why there are no metrics
            incident.metrics = None
            incident.metrics_error = f"{e.__class__.__name__}: {e}".rstrip(": ")

    def _close(self, backend: str) -> None:
        incident = self._open.pop(backend, None)
        if incident is None:
            return
        incidents = self.directory / "incidents"
        try:
            write_incident(incidents, incident.id, incident.as_record(), incident.metrics)
        except OSError as e:  # (a full disk: said, not raised into the event loop)
            log.error("incident %s not written to %s: %s", incident.id, incidents, e)

    def close_all(self) -> None:
        for task in list(self._scrapes):
            task.cancel()
        for backend in list(self._open):
            self._close(backend)


def is_engine_crash(how: str) -> bool:
    """Whether a death signal is the engine's own word that it died (not a connection that
    simply vanished)."""
    return how.startswith(ENGINE_SIGNALS) or (how.startswith("health check failed")
                                              and " answered 5" in how)


def death_signal(relay) -> str | None:
    """How an ended exchange shows its backend died, if it does."""
    if relay.ending == Ending.UPSTREAM_LOST:
        return "response cut mid-way" if relay.head_sent \
            else "connection dropped before the answer"
    observer = relay.observer
    if observer is not None and observer.error is not None:
        message = str(observer.error.get("message", ""))
        if any(marker.decode() in message for marker in ENGINE_DEAD_MARKERS) \
                or observer.error.get("code") == 500:
            return "engine error event in the stream"
    if relay.status >= 500:
        body = b"".join(relay.captured) if relay.captured else b""
        if any(body.find(marker) >= 0 for marker in ENGINE_DEAD_MARKERS):
            return f"engine-dead {relay.status}"
    return None


def suspect_of(relay, now: float, *, in_flight: bool) -> dict:
    request = relay.request
    sent = relay.forwarded_body if relay.forwarded_body is not None \
        else request.body if request is not None else None
    try:
        body = orjson.loads(sent) if sent is not None else None
    except orjson.JSONDecodeError:
        body = None
    reasons = unusual(body)
    age = now - relay.sent_at if relay.sent_at else 0.0
    score = sum(weight for weight, _ in reasons) + (2 if age <= 1.0 else 0) \
        + (1 if in_flight else 0)
    return {"id": relay.request_id.decode("latin-1"), "endpoint": relay.endpoint,
            "model": relay.model, "stream": relay.stream, "tenant": relay.tenant,
            "principal": relay.principal, "age": round(age, 6),
            "in_flight": in_flight, "outcome": None,
            "unusual": [reason for _, reason in reasons], "score": score,
            "fingerprints": fingerprints(body)}
