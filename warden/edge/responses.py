"""Answers the gateway writes itself."""

from __future__ import annotations

from warden.edge import wire
from warden.edge.contracts import ClientStream
from warden.errors import WardenError

JSON = wire.JSON


def respond_error(client: ClientStream, error: WardenError, request_id: bytes | None,
                  extra: bytes = b"") -> None:
    """The OpenAI error envelope with the error's status (and the request id, if any; and
    `extra` header lines)."""
    headers = JSON if request_id is None else JSON + b"x-request-id: " + request_id + wire.CRLF
    if error.headers:
        headers += error.headers
    if extra:
        headers += extra
    client.respond(error.status, headers, error.envelope())


def respond_json(client: ClientStream, status: int, body: bytes, request_id: bytes,
                 headers: bytes = JSON) -> None:
    """A JSON answer of the gateway's own (or `headers`' content type), with its request id."""
    client.respond(status, headers + b"x-request-id: " + request_id + wire.CRLF, body)
