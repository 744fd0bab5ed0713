"""The admin page: static files (admin/static/: HTML, plain JavaScript, CSS; no build step,
nothing fetched from elsewhere) served at GET /admin/ and /admin/static/NAME.

The files hold no data: the page reads everything from the admin API's JSON routes, with the
admin key it asks for when the gateway has admin keys (sent as `Authorization: Bearer`; kept
in the tab's sessionStorage). So the files need no key (a browser's navigation cannot send
one); who may load them is still decided by `AdminRoutes.allowed` (loopback clients only while
there are no admin keys).

Answers carry a Content-Security-Policy that allows scripts, styles and requests from the
gateway itself only, and no inline script or style markup: whatever a client or a config
put in a model or tenant name that the page shows cannot run. Not on the data path."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from warden.edge import wire
from warden.edge.connection import HttpConnection
from warden.edge.request import HttpRequest
from warden.edge.responses import respond_error
from warden.errors import NotFound

PAGE: Final = "/admin/"
STATIC: Final = "/admin/static/"
FILES: Final = Path(__file__).parent / "static"
TYPES: Final = {".html": b"text/html; charset=utf-8",
                ".js": b"text/javascript; charset=utf-8",
                ".css": b"text/css; charset=utf-8",
                ".svg": b"image/svg+xml",
                ".txt": b"text/plain; charset=utf-8"}
POLICY: Final = (b"default-src 'none'; script-src 'self'; style-src 'self'; "
                 b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                 b"form-action 'none'; frame-ancestors 'none'")
HEADERS: Final = wire.header_block(
    (b"content-security-policy", POLICY), (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"))


class AdminPage:
    def __init__(self, directory: Path = FILES):
        """The files of `directory`, read once (a few kilobytes)."""
        self._files: dict[str, tuple[bytes, bytes]] = {}
        for path in sorted(directory.iterdir()) if directory.is_dir() else ():
            kind = TYPES.get(path.suffix)
            if kind is not None and path.is_file():
                self._files[path.name] = (kind, path.read_bytes())

    @staticmethod
    def serves(path: str) -> bool:
        """Whether `path` is the page's (not the admin API's)."""
        return path == PAGE or path.startswith(STATIC)

    def serve(self, request: HttpRequest, client: HttpConnection, rid: bytes) -> None:
        path = request.path
        name = "index.html" if path == PAGE else path[len(STATIC):]
        found = self._files.get(name)
        if found is None:
            respond_error(client, NotFound(f"Unknown path: {path}"), rid)
            return
        kind, body = found
        headers = wire.header_block((b"content-type", kind)) + HEADERS + \
            b"x-request-id: " + rid + wire.CRLF
        client.respond(200, headers, body)  # (the edge leaves the body out for HEAD)
