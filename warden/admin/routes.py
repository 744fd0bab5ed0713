"""Every `/admin/` route, behind one seam: `AdminRoutes.handle` is the only way in, so the
check that will guard the admin API (an admin key, a separate listener) goes in one place,
`allowed`, and covers every admin route, present and future.

A route is a plain function of (request, client, request id); a POST route that does I/O is a
coroutine function (the connection awaits it). Not on the data path (not compiled)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine

from warden.admin.fleet import BACKEND_ACTIONS, FleetAdmin
from warden.admin.quarantine import QuarantineAdmin
from warden.admission.refused import unknown_path
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.errors import MethodNotAllowed, WardenError

PREFIX = "/admin/"

# A route gets the request's id (every response carries an X-Request-Id).
LocalRoute = Callable[[HttpRequest, HttpConnection, bytes], None]
PostRoute = Callable[[HttpRequest, HttpConnection, bytes], Coroutine[None, None, None]]


class AdminRoutes:
    def __init__(self, fleet: FleetAdmin, quarantine: QuarantineAdmin):
        self._get: dict[str, LocalRoute] = {
            "/admin/backends": fleet.backends,
            "/admin/quarantine": quarantine.listing,
        }
        self._post: dict[str, PostRoute] = {
            "/admin/quarantine/lift": quarantine.lift,
            "/admin/reload": fleet.reload,
        }
        self._backend_action = fleet.backend_action

    def allowed(self, request: HttpRequest) -> WardenError | None:
        """The admin API's access check: None lets the request in, an error refuses it.
        Today every client that reaches the port is let in (the README says so); this is
        where authentication goes."""
        return None

    def handle(self, request: HttpRequest, client: HttpConnection,
               rid: bytes) -> Coroutine[None, None, None] | None:
        """Answer a request for a path under `PREFIX`; a coroutine when the route does I/O."""
        refused = self.allowed(request)
        if refused is not None:
            respond_error(client, refused, rid)
            return None
        path = request.path
        route = self._get.get(path)
        if route is None and request.method == "POST":
            post = self._post.get(path)
            if post is not None:
                return post(request, client, rid)
            if path.startswith(BACKEND_ACTIONS):
                self._backend_action(request, client, rid)
                return None
        serve_local(route, request, client, rid)
        return None


def serve_local(route: LocalRoute | None, request: HttpRequest, client: HttpConnection,
                rid: bytes) -> None:
    """Answer with the gateway's own `route` (GET or HEAD only), or the error that says why
    not: 404 (403 for a path never forwarded: admission.refused) or 405."""
    if route is None:
        respond_error(client, unknown_path(request.path), rid)
    elif request.method not in ("GET", "HEAD"):
        respond_error(client, MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}"), rid)
    else:
        route(request, client, rid)
