"""Answers the gateway writes itself."""

from __future__ import annotations

from warden.edge.server import HttpConnection
from warden.errors import WardenError

JSON = (b"content-type", b"application/json")


def respond_error(client: HttpConnection, error: WardenError, request_id: bytes | None) -> None:
    """The OpenAI error envelope with the error's status (and the request id, if any)."""
    headers = [JSON]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    client.respond(error.status, headers, error.envelope())
