"""The memory that request bodies hold, across all of a server's connections.

A body counts as its bytes come (a Content-Length that does not fit now is refused at its
head, before it is sent; it is not reserved whole from the head: heads that promised large
bodies and sent nothing held the whole budget from every other client); it stops counting when
its answer ends or its connection is lost, exactly once (the connection keeps the sum it
holds).
What still refers to a body past its answer (the flight recorder's queue, the incident
detector's last requests) has bounds of its own.
"""

from __future__ import annotations

import logging
from typing import Final

from warden.backoff import Throttle
from warden.errors import BodyBufferFull

log = logging.getLogger("warden.edge")

# Refusals are logged at most this often (seconds), with how many there were meanwhile.
LOG_EVERY: Final = 10.0


class BodyBudget:
    """`held`: bytes of request bodies reserved now; `limit`: what they may reach
    (`limits.max_body_buffer`; a reload may change it)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._told = Throttle(LOG_EVERY)
        self._unlogged = 0

    def refusal(self, wanted: int, now: float) -> BodyBufferFull:
        """The error for a body of `wanted` more bytes that does not fit (logged with
        backoff: `now` is the loop's time)."""
        self._unlogged += 1
        if self._told.ready(now):
            log.warning("refused %d request(s) with 503: request bodies in memory hold %d of "
                        "limits.max_body_buffer (%d bytes); the last one wanted %d more",
                        self._unlogged, self.held, self.limit, wanted)
            self._unlogged = 0
        return BodyBufferFull("the gateway is holding as many request bodies as it may; "
                              "retry shortly")
