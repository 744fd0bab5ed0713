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
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.exchange import RequestIds

# POST endpoints routed to a backend that serves the body's `model`.
PROXIED_PATHS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/tokenize", "/detokenize",
})


class Routes:
    def __init__(self, admission: Admission, own: OwnEndpoints, admin: AdminRoutes,
                 ids: RequestIds, *, metrics_public: bool = True):
        """`metrics_public`: /metrics open to anyone who reaches the port (else behind the
        admin API's check)."""
        self.admission = admission
        self._admin = admin
        self._ids = ids
        self._local: dict[str, LocalRoute] = {
            "/v1/models": own.models,
            "/health": own.health,
            "/ready": own.ready,
            "/version": own.version,
            "/metrics": own.prometheus if metrics_public else admin.guarded(own.prometheus),
        }

    def __call__(self, request: HttpRequest,
                 client: HttpConnection) -> Coroutine[None, None, None] | None:
        """The edge's handler: None, or a coroutine for the connection to await (an admin
        route that does I/O)."""
        path = request.path
        if path in PROXIED_PATHS:
            self.admission.handle(request, client)
            return None
        rid = self._ids.pick(request.fields.get(b"x-request-id"))
        if path.startswith(PREFIX):
            return self._admin.handle(request, client, rid)
        serve_local(self._local.get(path), request, client, rid)
        return None
