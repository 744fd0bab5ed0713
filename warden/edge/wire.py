"""Bytes on the wire: status lines, header blocks, response heads, the Date header.

Header blocks are pre-rendered bytes (`name: value\r\n` lines): a constant block costs nothing
per response, and a relayed head is rendered in one pass.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}

# (Final: compiled, these are constants in the C code, not lookups in the module.)
CHUNKED: Final = b"transfer-encoding: chunked\r\n"
CONNECTION_CLOSE: Final = b"connection: close\r\n"
LAST_CHUNK: Final = b"0\r\n\r\n"
CRLF: Final = b"\r\n"
# On a 503 the gateway gives itself (no room for a request body): the SDKs retry after it.
RETRY_AFTER: Final = b"retry-after: 1\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def header_block(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"".join(name + b": " + value + CRLF for name, value in pairs)


JSON: Final = header_block((b"content-type", b"application/json"))


def content_length(n: int) -> bytes:
    return b"content-length: %d\r\n" % n


def date_line(now: float | None = None) -> bytes:
    """The `Date` header line (IMF-fixdate) for `now` (default: the current second)."""
    return b"date: " + formatdate(time.time() if now is None else now, usegmt=True).encode() \
        + CRLF
