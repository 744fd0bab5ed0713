"""The admin API's quarantine routes, served through admin.routes: what is
held, and lifting it. Not on the data path (so not compiled: warden/compiled.py)."""

from __future__ import annotations

import orjson

from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error, respond_json
from warden.errors import InvalidRequest, NotFound, error_text
from warden.guard.probation import Probation
from warden.guard.quarantine import QuarantineUnavailable


class QuarantineAdmin:
    def __init__(self, probation: Probation | None):
        """`probation`: None when the quarantine is off."""
        self._probation = probation

    def listing(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """GET /admin/quarantine: the entries, the store's state, how many requests wait."""
        probation = self._probation
        body: dict = {"quarantine": [], "enabled": probation is not None}
        if probation is not None:
            body["quarantine"] = probation.quarantine.listing()
            body["store"] = probation.sync.state()
            body["waiting"] = probation.waiting
        respond_json(client, 200, orjson.dumps(body), rid)

    async def lift(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        """POST /admin/quarantine/lift {"fingerprints": [...]} or {"all": true}: lift them,
        each with its request's other fingerprint (a store write, answered once done)."""
        try:
            asked = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            asked = None
        fingerprints = asked.get("fingerprints") if isinstance(asked, dict) else None
        lift_all = isinstance(asked, dict) and asked.get("all") is True
        probation = self._probation
        if probation is None:
            respond_error(client, NotFound("the quarantine is not enabled"), rid)
            return
        if not lift_all and not (isinstance(fingerprints, list) and fingerprints
                                 and all(isinstance(f, str) for f in fingerprints)):
            respond_error(client, InvalidRequest(
                'expected {"fingerprints": ["x:...", ...]} or {"all": true}',
                param="fingerprints"), rid)
            return
        try:
            lifted = await probation.sync.lift(None if lift_all else fingerprints)
        except Exception as e:  # the store is down: say so, in the envelope
            respond_error(client, QuarantineUnavailable(error_text(e)), rid)
            return
        respond_json(client, 200, orjson.dumps({"lifted": lifted}), rid)

    def ready(self) -> dict | None:
        """What `/ready` says of the quarantine's store (None: no quarantine)."""
        return self._probation.sync.state() if self._probation is not None else None
