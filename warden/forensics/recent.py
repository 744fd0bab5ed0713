"""The exchanges last sent to one backend: the incident detector's suspects when it dies.

Bounded twice: by count, and by the request bytes they hold. Each keeps its request (the
suspect list needs its body: what is unusual in it, its fingerprints), and a count alone
would let a backend's last 64 requests of up to `limits.max_body` each hold gigabytes. The
newest is always kept, however large: it is the likeliest suspect. (The requests in flight
when a backend dies are suspects whether or not they are still here: the forwarder has them.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warden.proxy.relay import Relay


class RecentExchanges:
    __slots__ = ("_held", "_relays", "max_bytes", "max_count")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._relays: deque[Relay] = deque()
        self._held = 0  # request bytes held by the relays kept

    def append(self, relay: Relay) -> None:
        """Per request sent: one length read and one comparison on the usual path."""
        self._relays.append(relay)
        self._held += _held_by(relay)
        if self._held > self.max_bytes or len(self._relays) > self.max_count:
            self._trim()

    def _trim(self) -> None:
        relays = self._relays
        while len(relays) > 1 and (self._held > self.max_bytes
                                   or len(relays) > self.max_count):
            self._held -= _held_by(relays.popleft())

    @property
    def held_bytes(self) -> int:
        return self._held

    def __iter__(self) -> Iterator[Relay]:
        return iter(self._relays)

    def __len__(self) -> int:
        return len(self._relays)


def _held_by(relay: Relay) -> int:
    """The request bytes a relay keeps alive (a body the guard rewrote is kept too). Read the
    same way when it joins and when it leaves: neither changes once it is sent."""
    request = relay.request
    held = len(request.body) if request is not None else 0
    forwarded = relay.forwarded_body
    return held if forwarded is None else held + len(forwarded)
