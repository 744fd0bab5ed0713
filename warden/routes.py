"""The gateway's path table: the OpenAI endpoints go through admission to a backend; the
gateway's own endpoints are answered here; every `/admin/` path goes to the admin API's one
entrance (admin.routes).

Synchronous on purpose: the data path starts (and usually sends) the upstream request from
the client's read callback, with no task per request."""

from __future__ import annotations

from collections.abc import Coroutine

from warden.admin.own import OwnEndpoints
from warden.admin.routes import PREFIX, AdminRoutes, LocalRoute, serve_local
from warden.admission.chain import Admission
from warden.admission.cors import Cors
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.exchange import RequestIds

# POST endpoints routed to a backend that serves the body's `model`.
PROXIED_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/tokenize", "/detokenize",
})


class Routes:
    """One listener's table. With a separate admin listener (`admin_listen`), the main one
    has no `admin` (its /admin/ paths are unknown) and the admin one no `admission` (it
    proxies nothing); both answer the gateway's own endpoints."""

    def __init__(self, admission: Admission | None, own: OwnEndpoints,
                 admin: AdminRoutes | None, ids: RequestIds, *, metrics_public: bool = True,
                 checks: AdminRoutes | None = None, cors: Cors | None = None):
        """`metrics_public`: /metrics open to anyone who reaches the port (else behind the
        admin API's check: `checks`, the admin routes of the gateway, by default `admin`)."""
        self.admission = admission
        self._cors = cors  # (answers preflights; admission adds the lines to answers)
        # Proxied paths go straight to admission (no admin listener, no preflight to answer).
        self._direct = admission is not None and cors is None
        self._admin = admin
        self._ids = ids
        checks = checks if checks is not None else admin
        assert checks is not None or metrics_public, "/metrics behind which check?"
        self._local: dict[str, LocalRoute] = {
            "/v1/models": own.models,
            "/health": own.health,
            "/ready": own.ready,
            "/version": own.version,
            "/metrics": own.prometheus if metrics_public or checks is None
            else checks.guarded(own.prometheus),
        }

    def __call__(self, request: HttpRequest,
                 client: HttpConnection) -> Coroutine[None, None, None] | None:
        """The edge's handler: None, or a coroutine for the connection to await (an admin
        route that does I/O)."""
        path = request.path
        if path in PROXIED_PATHS:
            admission = self.admission
            if self._direct or (admission is not None and request.method != "OPTIONS"):
                assert admission is not None
                admission.handle(request, client)  # (a preflight: answered below)
                return None
        rid = self._ids.pick(request.fields.get(b"x-request-id"))
        if self._cors is not None and request.method == "OPTIONS":
            self._cors.preflight(request, client, rid)
            return None
        admin = self._admin
        if admin is not None and path.startswith(PREFIX):
            return admin.handle(request, client, rid)
        serve_local(self._local.get(path), request, client, rid)
        return None
