"""Every `/admin/` route, behind one seam: `AdminRoutes.handle` is the only way in, so the
check that guards the admin API is in one place, `allowed`, and covers every admin route,
present and future (and `/metrics` when `auth.metrics: admin`).

Secure by default: with admin keys configured (`auth.admin_keys`), a request needs one
(`Authorization: Bearer KEY`: 401 otherwise); with none, only loopback clients are let in
(403 otherwise), so a gateway listening on a public address does not hand its drain, reload
and quarantine-lift buttons to whoever reaches the port.

The admin page's files (admin/page.py) come through the same entrance and the same check;
they hold no data, so with admin keys they need none (the page asks for a key and sends it
with every call to the API).

A route is a plain function of (request, client, request id); a POST route that does I/O is a
coroutine function (the connection awaits it). Not on the data path (not compiled)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Coroutine

from warden.admin.fleet import BACKEND_ACTIONS, FleetAdmin
from warden.admin.keys import KEYS, KeysAdmin
from warden.admin.live import INCIDENTS, REQUESTS, LiveAdmin
from warden.admin.page import AdminPage
from warden.admin.quarantine import QuarantineAdmin
from warden.admin.refused import unknown_path
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.errors import Forbidden, MethodNotAllowed, Unauthenticated, WardenError
from warden.tenancy.client_keys import ClientKeys
from warden.tenancy.keys import KeyRing, presented_key

PREFIX = "/admin/"

# A route gets the request's id (every response carries an X-Request-Id).
LocalRoute = Callable[[HttpRequest, HttpConnection, bytes], None]
PostRoute = Callable[[HttpRequest, HttpConnection, bytes], Coroutine[None, None, None]]


class AdminRoutes:
    def __init__(self, fleet: FleetAdmin, quarantine: QuarantineAdmin,
                 admins: KeyRing | None = None, keys: KeysAdmin | None = None,
                 live: LiveAdmin | None = None, page: AdminPage | None = None):
        """`admins`: the admin keys (None or empty: loopback clients only); `keys`: the
        client keys' routes (None: no key is listed, none can be made); `live`: the live
        views (traffic, requests in flight, incidents; None: not served); `page`: the admin
        page's files (None: no page)."""
        self._admins = admins if admins is not None and len(admins) else None
        self._keys = keys if keys is not None else KeysAdmin(ClientKeys(), None)
        self._get: dict[str, LocalRoute] = {
            "/admin/backends": fleet.backends,
            "/admin/quarantine": quarantine.listing,
        }
        self._post: dict[str, PostRoute] = {
            "/admin/quarantine/lift": quarantine.lift,
            "/admin/reload": fleet.reload,
        }
        self._backend_action = fleet.backend_action
        self._live = live
        if live is not None:
            self._get.update({"/admin/stats": live.stats, "/admin/requests": live.requests,
                              "/admin/guard/recent": live.guard_recent,
                              "/admin/limits": live.limits})
        self._page = page

    def allowed(self, request: HttpRequest, page: bool = False) -> WardenError | None:
        """The admin API's access check: None lets the request in, an error refuses it.
        `page`: a file of the admin page, which holds no data: with admin keys it needs
        none (a browser's navigation cannot send one; the page sends the key it asks for
        with every call to the API); without, loopback clients only, as the API."""
        if self._admins is not None and page:
            return None
        if self._admins is not None:
            presented = presented_key(request.fields.get(b"authorization"),
                                      request.fields.get(b"api-key"))
            if presented is None or self._admins.find(presented) is None:
                return Unauthenticated("The admin API needs an admin key (Authorization: "
                                       "Bearer KEY, one of auth.admin_keys).")
            return None
        if not is_loopback(request.client_ip):
            return Forbidden("The admin API answers loopback clients only until admin keys "
                             "are configured (auth.admin_keys).")
        if not _named_locally(request):
            return Forbidden("Without admin keys, the admin API answers requests addressed "
                             "to 127.0.0.1, [::1] or localhost, and not sent by another site's "
                             "page (Host, Origin); configure auth.admin_keys otherwise.")
        return None

    def guarded(self, route: LocalRoute) -> LocalRoute:
        """`route` behind the admin API's check (`/metrics` with `auth.metrics: admin`)."""
        def checked(request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
            refused = self.allowed(request)
            if refused is not None:
                respond_error(client, refused, rid)
            else:
                route(request, client, rid)
        return checked

    def handle(self, request: HttpRequest, client: HttpConnection,
               rid: bytes) -> Coroutine[None, None, None] | None:
        """Answer a request for a path under `PREFIX`; a coroutine when the route does I/O."""
        path = request.path
        page = self._page is not None and AdminPage.serves(path)
        refused = self.allowed(request, page)
        if refused is not None:
            respond_error(client, refused, rid)
            return None
        if page:
            assert self._page is not None
            serve_local(self._page.serve, request, client, rid)
            return None
        if path == KEYS or path.startswith(KEYS + "/"):
            return self._keys.handle(request, client, rid)
        route = self._get.get(path)
        live = self._live
        if route is None and request.method == "POST":
            post = self._post.get(path)
            if post is not None:
                return post(request, client, rid)
            if path.startswith(BACKEND_ACTIONS):
                self._backend_action(request, client, rid)
                return None
            if live is not None and path.startswith(REQUESTS):
                live.abort(request, client, rid)
                return None
        if route is None and live is not None and request.method in ("GET", "HEAD"):
            if path == INCIDENTS[:-1]:
                return live.incidents(request, client, rid)
            if path.startswith(INCIDENTS):
                return live.incident(request, client, rid)
        serve_local(route, request, client, rid)
        return None


def serve_local(route: LocalRoute | None, request: HttpRequest, client: HttpConnection,
                rid: bytes) -> None:
    """Answer with the gateway's own `route` (GET or HEAD only), or the error that says why
    not: 404 (403 for a path never forwarded: admin.refused) or 405."""
    if route is None:
        respond_error(client, unknown_path(request.path), rid)
    elif request.method not in ("GET", "HEAD"):
        respond_error(client, MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}"), rid)
    else:
        route(request, client, rid)


def _named_locally(request: HttpRequest) -> bool:
    """A loopback client's request as this host's own tools and pages send it: its `Host`
    (if any) names a loopback address or localhost, and so does its `Origin` (if any). A web
    page the admin has open elsewhere can make the browser send requests to 127.0.0.1 (a
    form, or its own name re-pointed at 127.0.0.1: DNS rebinding); those carry the page's
    `Origin`, or its own name as `Host`."""
    host = request.fields.get(b"host")
    if host is not None and not _local_name(host.decode("latin-1")):
        return False
    origin = request.header(b"origin")
    if origin is None:
        return True
    scheme, _, rest = origin.decode("latin-1").partition("://")
    return scheme in ("http", "https") and _local_name(rest)


def _local_name(authority: str) -> bool:
    """`host[:port]` names this host's loopback: localhost, 127.x.y.z, [::1]."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    else:
        host = host.partition(":")[0]
    return host.lower() == "localhost" or is_loopback(host)


def is_loopback(ip: str) -> bool:
    """Whether `ip` is this host's own (127.0.0.0/8, ::1, or IPv4 loopback mapped in IPv6)."""
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)
