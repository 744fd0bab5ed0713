"""What the gateway knows about one request from arrival to end: the unit that metrics (and,
later, the flight recorder) receive exactly once."""

from __future__ import annotations

import os
import re

_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


class RequestIds:
    """Request ids: the client's `X-Request-Id` when it is sane, else `<process prefix>-<n>`
    (unique per process without a syscall per request; the random prefix separates restarts
    and replicas)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode()
        self._counter = 0

    def pick(self, client_value: bytes | None) -> bytes:
        if client_value is not None and _CLIENT_ID.fullmatch(client_value):
            return client_value
        self._counter += 1
        return b"%s-%x" % (self._prefix, self._counter)


class Exchange:
    __slots__ = (
        "attempts",
        "backend",
        "client_ip",
        "ended_at",
        "endpoint",
        "error",
        "finish_reasons",
        "model",
        "received_at",
        "request_id",
        "status",
        "stream",
        "ttft",
        "usage",
        "verdict",
    )

    def __init__(self, request_id: bytes, endpoint: str, client_ip: str, received_at: float):
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_ip = client_ip
        self.received_at = received_at
        self.model: str | None = None
        self.stream = False
        self.backend: str | None = None
        self.attempts: list[str] = []
        self.status = 0
        self.verdict: str | None = None
        self.ttft: float | None = None
        self.usage: dict | None = None
        self.finish_reasons: list[str] = []
        self.error: str | None = None
        self.ended_at = 0.0

    @property
    def duration(self) -> float:
        return self.ended_at - self.received_at
