"""Bytes on the wire: status lines, response heads, chunk framing, the Date header."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}

CHUNKED = b"transfer-encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CRLF = b"\r\n"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def response_head(status: int, headers: list[tuple[bytes, bytes]], framing: bytes) -> bytes:
    """`framing` is a content-length or transfer-encoding line (or b"" for no body)."""
    parts = [status_line(status)]
    for name, value in headers:
        parts.append(name + b": " + value + CRLF)
    parts.append(framing)
    parts.append(CRLF)
    return b"".join(parts)


def content_length(n: int) -> bytes:
    return b"content-length: %d\r\n" % n


class DateCache:
    """The IMF-fixdate `Date` value, formatted at most once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value
