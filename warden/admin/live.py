"""The admin API's live views (admin.routes), what the admin page polls:

    GET  /admin/stats                 the traffic of the last minutes, per second (admin.traffic)
    GET  /admin/requests              the requests in flight (from when they are sent to a
                                      backend): id, tenant, model, backend, age, stream events
                                      relayed so far (about a token each)
    POST /admin/requests/ID/abort     end one: its backend connection is closed (vLLM frees its
                                      KV cache) and its client told, through its single end
    GET  /admin/guard/recent          the last requests the guard refused or changed
    GET  /admin/incidents             the incidents, newest first (those still open, then the
                                      files the detector wrote), each with its ranked suspects
    GET  /admin/incidents/ID          one incident's file, as a download
    GET  /admin/limits                the limits' store (None: no limits)

Not on the data path (so not compiled)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from warden.admin.traffic import Traffic
from warden.edge import wire
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error, respond_json
from warden.errors import NotFound
from warden.forensics.incidents import IncidentDetector
from warden.proxy.relay import Relay

REQUESTS = "/admin/requests/"
INCIDENTS = "/admin/incidents/"
SHOWN_INCIDENTS = 50  # the newest; `warden incidents list` has them all
_INCIDENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,200}")


class LiveAdmin:
    def __init__(self, traffic: Traffic, active: Iterable[Relay], incidents: IncidentDetector,
                 limits: Callable[[], dict] | None = None):
        """`active`: the requests in flight (the forwarder's set); `limits`: the state of the
        limits' store (None: no limits)."""
        self._traffic = traffic
        self._active = active
        self._incidents = incidents
        self._limits = limits

    def stats(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        now = time.monotonic()
        body = self._traffic.stats(now)
        body["in_flight"] = sum(1 for _ in self._active)
        respond_json(client, 200, orjson.dumps(body), rid)

    def requests(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        now = time.monotonic()
        listed = sorted((_in_flight(relay, now) for relay in list(self._active)),
                        key=lambda r: -r["age"])
        respond_json(client, 200, orjson.dumps({"requests": listed}), rid)

    def abort(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """POST /admin/requests/ID/abort: the exchange ends as a cancelled one (`Relay.cancel`
        with a reason: its end is the one every exchange has, so its listeners hear it
        once, its backend's slot is freed, and it never counts against the backend)."""
        wanted, _, action = request.path[len(REQUESTS):].rpartition("/")
        found = next((r for r in list(self._active)
                      if r.request_id.decode("latin-1") == wanted), None)
        if action != "abort" or found is None:
            respond_error(client, NotFound(
                f"no request {wanted!r} in flight (expected {REQUESTS}ID/abort, the id as "
                "GET /admin/requests lists it)" if action == "abort" else
                f"Unknown path: {request.path} (expected {REQUESTS}ID/abort)"), rid)
            return
        found.cancel("aborted by an operator through the admin API")
        respond_json(client, 200, orjson.dumps({"aborted": wanted,
                                                "backend": found.backend}), rid)

    def guard_recent(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        decisions = list(reversed(self._traffic.decisions))
        respond_json(client, 200, orjson.dumps({"decisions": decisions}), rid)

    def limits(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        body = {"enabled": self._limits is not None,
                "state": self._limits() if self._limits is not None else None}
        respond_json(client, 200, orjson.dumps(body), rid)

    async def incidents(self, request: HttpRequest, client: HttpConnection,
                        rid: bytes) -> None:
        """GET /admin/incidents: the open ones (still gathering signals) and the newest
        files, read off the loop."""
        opened = self._incidents.open_records()
        written = await asyncio.to_thread(_read_incidents, self._incidents.directory)
        seen = {i["id"] for i in opened}
        listed = [{**i, "open": True} for i in opened] + \
            [{**i, "open": False} for i in written if i["id"] not in seen]
        respond_json(client, 200, orjson.dumps({"incidents": listed}), rid)

    async def incident(self, request: HttpRequest, client: HttpConnection,
                       rid: bytes) -> None:
        """GET /admin/incidents/ID: its file as written, as an attachment."""
        wanted = request.path[len(INCIDENTS):]
        path = self._incidents.directory / "incidents" / f"incident-{wanted}.json"
        body = await asyncio.to_thread(_read, path) if _INCIDENT_ID.fullmatch(wanted) \
            and ".." not in wanted else None
        if body is None:
            respond_error(client, NotFound(f"no incident {wanted!r} (the ids as GET "
                                           "/admin/incidents lists them)"), rid)
            return
        headers = wire.JSON + wire.header_block((
            b"content-disposition", b'attachment; filename="incident-%s.json"'
            % wanted.encode()))
        respond_json(client, 200, body, rid, headers)


def _in_flight(relay: Relay, now: float) -> dict:
    observer = relay.observer
    return {"id": relay.request_id.decode("latin-1"), "tenant": relay.tenant,
            "principal": relay.principal, "model": relay.model, "backend": relay.backend,
            "endpoint": relay.endpoint, "stream": relay.stream,
            "age": round(now - relay.received_at, 3),
            "events": observer.events if observer is not None else None,
            "status": relay.status or None}


def _read_incidents(directory: Path) -> list[dict]:
    files = sorted((directory / "incidents").glob("incident-*.json"))[-SHOWN_INCIDENTS:]
    found = []
    for path in reversed(files):
        body = _read(path)
        if body is not None:
            try:
                found.append(orjson.loads(body))
            except orjson.JSONDecodeError:
                continue  # (being written, or damaged: `warden incidents show` says which)
    return found


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
