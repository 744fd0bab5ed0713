"""Every `/admin/` route goes through one entrance (`AdminRoutes.handle`), so the access check
in `allowed` covers all of them, present and future; the gateway's own public endpoints do
not pass through it."""

from __future__ import annotations

import asyncio

import pytest

from build_support.training import FakeTransport
from warden.admin.fleet import FleetAdmin
from warden.admin.own import OwnEndpoints
from warden.admin.page import AdminPage
from warden.admin.quarantine import QuarantineAdmin
from warden.admin.routes import AdminRoutes
from warden.app import build_app
from warden.edge.server import HttpConnection, HttpServer, ServerLimits
from warden.errors import Forbidden, WardenError
from warden.exchange import RequestIds
from warden.routes import Routes
from warden.settings import parse_settings


class Locked(AdminRoutes):
    def allowed(self, request, page: bool = False) -> WardenError | None:
        return Forbidden("admin key required")


def bound_gateway():
    """A gateway of one backend, built and bound to the running loop (never started)."""
    settings = parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9",
                                             "models": ["m"]}],
                               "recorder": {"enabled": False}}, {})
    gateway = build_app(settings)
    gateway.forwarder.bind(asyncio.get_running_loop())
    return gateway


def answer(routes: Routes, method: bytes, path: bytes, writes) -> int:
    transport = FakeTransport()
    client = HttpConnection(HttpServer(routes, ServerLimits(), writes=writes))
    client.connection_made(transport)  # type: ignore[arg-type]
    client.data_received(b"%s %s HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-length: 0\r\n\r\n"
                         % (method, path))
    writes.flush()
    return int(b"".join(transport.out).split(b" ", 2)[1])


@pytest.mark.asyncio
async def test_one_check_guards_every_admin_route_and_only_those():
    gateway = bound_gateway()
    writes = gateway.forwarder.writes
    fleet = FleetAdmin(gateway.policy, gateway.backends)
    quarantine = QuarantineAdmin(None)
    own = OwnEndpoints(gateway.backends, gateway.metrics, quarantine)
    open_ = Routes(gateway.handler.admission, own, AdminRoutes(fleet, quarantine),
                   RequestIds())
    asked = [(b"GET", b"/admin/backends"), (b"GET", b"/admin/quarantine"),
             (b"POST", b"/admin/backends/b/drain"), (b"POST", b"/admin/reload"),
             (b"GET", b"/admin/nothing-here"), (b"GET", b"/admin/"),
             (b"GET", b"/admin/static/app.js")]
    locked = Routes(gateway.handler.admission, own,
                    Locked(fleet, quarantine, page=AdminPage()), RequestIds())
    assert [answer(locked, m, p, writes) for m, p in asked] == [403] * len(asked)
    assert not next(iter(gateway.backends)).draining  # refused before it acted
    assert [answer(open_, m, p, writes) for m, p in asked[:3]] == [200, 200, 200]
    assert next(iter(gateway.backends)).draining
    assert answer(locked, b"GET", b"/health", writes) == 200  # public: not behind it
    assert answer(locked, b"GET", b"/metrics", writes) == 200


class Remote(FakeTransport):
    def get_extra_info(self, name, default=None):
        return ("10.1.2.3", 5555) if name == "peername" else default


@pytest.mark.asyncio
async def test_without_admin_keys_only_loopback_clients_reach_the_admin_api():
    gateway = bound_gateway()
    writes = gateway.forwarder.writes
    replies = []
    for transport in (Remote(), FakeTransport()):
        client = HttpConnection(HttpServer(gateway.handler, ServerLimits(), writes=writes))
        client.connection_made(transport)  # type: ignore[arg-type]
        client.data_received(b"GET /admin/backends HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
                             b"GET /health HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n")
        writes.flush()
        replies.append(b"".join(transport.out))
    remote, local = replies
    assert remote.startswith(b"HTTP/1.1 403") and b"loopback clients only" in remote
    assert b"HTTP/1.1 200" in remote.split(b"\r\n\r\n", 1)[1]  # /health: open to all
    assert local.startswith(b"HTTP/1.1 200")


def request_to(handler, transport: FakeTransport, writes, head: bytes) -> bytes:
    client = HttpConnection(HttpServer(handler, ServerLimits(), writes=writes))
    client.connection_made(transport)  # type: ignore[arg-type]
    client.data_received(head)
    writes.flush()
    return b"".join(transport.out)


@pytest.mark.asyncio
async def test_the_admin_page_is_let_in_by_the_same_check():
    """The page's files hold no data: with admin keys they load without one (the page asks
    for it and sends it with each API call); without admin keys, loopback clients only."""
    gateway = bound_gateway()
    writes = gateway.forwarder.writes
    page = b"GET /admin/ HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
    assert request_to(gateway.handler, Remote(), writes, page).startswith(b"HTTP/1.1 403")
    local = request_to(gateway.handler, FakeTransport(), writes, page)
    assert local.startswith(b"HTTP/1.1 200") and b"content-security-policy: " in local
    assert b"<script src=" in local and b"<script>" not in local  # no inline script

    keyed = parse_settings({"backends": [{"name": "b", "url": "http://127.0.0.1:9",
                                          "models": ["m"]}], "recorder": {"enabled": False},
                            "auth": {"admin_keys": [{"id": "ops", "value": "k" * 32}]}}, {})
    gateway = build_app(keyed)
    gateway.forwarder.bind(asyncio.get_running_loop())
    writes = gateway.forwarder.writes
    script = b"GET /admin/static/app.js HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
    assert request_to(gateway.handler, Remote(), writes, script).startswith(b"HTTP/1.1 200")
    api = b"GET /admin/requests HTTP/1.1\r\nhost: 127.0.0.1:8000\r\n\r\n"
    assert request_to(gateway.handler, Remote(), writes, api).startswith(b"HTTP/1.1 401")
    assert request_to(gateway.handler, FakeTransport(), writes, api).startswith(b"HTTP/1.1 401")
    with_key = b"GET /admin/requests HTTP/1.1\r\nhost: 127.0.0.1:8000\r\nauthorization: Bearer " \
        + b"k" * 32 + b"\r\n\r\n"
    answered = request_to(gateway.handler, Remote(), writes, with_key)
    assert answered.startswith(b"HTTP/1.1 200") and b'{"requests":[]}' in answered


@pytest.mark.parametrize(("fields", "status"), [
    (b"host: localhost:8000\r\n", 200),
    (b"host: [::1]:8000\r\norigin: http://127.0.0.1:8000\r\n", 200),   # the admin page's own
    (b"", 200),                                                         # (HTTP/1.0 tools)
    (b"host: rebound.example:8000\r\n", 403),        # a page's name re-pointed at 127.0.0.1
    (b"host: 127.0.0.1:8000\r\norigin: https://evil.example\r\n", 403),   # a form elsewhere
    (b"host: 127.0.0.1:8000\r\norigin: null\r\n", 403),
], ids=["localhost", "own page", "no host", "dns rebinding", "another site", "opaque"])
@pytest.mark.asyncio
async def test_without_admin_keys_a_loopback_request_must_be_addressed_locally(fields, status):
    """A browser on the admin's machine can be made to send requests to 127.0.0.1 by any
    page it shows: those name the page's site (Host, Origin) and are refused."""
    gateway = bound_gateway()
    out = request_to(gateway.handler, FakeTransport(), gateway.forwarder.writes,
                     b"POST /admin/backends/b/drain HTTP/1.1\r\n" + fields
                     + b"content-length: 0\r\n\r\n")
    assert int(out.split(b" ", 2)[1]) == status
    assert next(iter(gateway.backends)).draining is (status == 200)
