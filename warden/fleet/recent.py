"""The exchanges last sent to one backend: the incident detector's suspects when it dies.

A `deque(maxlen=RECENT_PER_BACKEND)` on each `Backend`, which the forwarder appends each
exchange it sends to (in C: this runs per request). Each keeps its request (the suspect list
needs its body: what is unusual in it, its fingerprints), so a count alone would let 64
requests of up to `limits.max_body` each hold gigabytes. The bytes are bounded where they come
from: a request whose body is larger than `LARGE_BODY` has the deque trimmed, oldest first, to
`max_bytes` (the newest always stays: it is the likeliest suspect). Smaller ones are not
counted, so what is held is at most `max_bytes` plus `maxlen` x `LARGE_BODY`. (The requests
in flight when a backend dies are suspects whether or not they are still here: the forwarder
has them.)
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warden.exchange import Exchange

RECENT_PER_BACKEND = 64            # exchanges kept per backend
RECENT_BYTES_PER_BACKEND = 64 * 2**20  # what a large body trims them to
LARGE_BODY = 2**20                 # a body this large (or more) trims the exchanges kept


def recent_exchanges() -> deque[Exchange]:
    return deque(maxlen=RECENT_PER_BACKEND)


def trim_to_bytes(recent: deque[Exchange], max_bytes: int | None = None) -> None:
    """Drop the oldest exchanges until those left hold at most `max_bytes` of requests
    (`RECENT_BYTES_PER_BACKEND` when None, read at the call, so that a test can lower it; the
    newest stays, however large). Called after a large body joined."""
    if max_bytes is None:
        max_bytes = RECENT_BYTES_PER_BACKEND
    held = sum(map(held_by, recent))
    while held > max_bytes and len(recent) > 1:
        held -= held_by(recent.popleft())


def held_by(exchange: Exchange) -> int:
    """The request bytes an exchange keeps alive (a body the guard rewrote is kept too)."""
    request = exchange.request
    held = len(request.body) if request is not None else 0
    forwarded = exchange.forwarded_body
    return held if forwarded is None else held + len(forwarded)
