"""Affinity keys (a prompt's prefix, a session) and rendezvous hashing onto backends.

Keys are CRC-32s, not Python's `hash()`: that one is salted per process, and gateway replicas
must send the same prefix or session to the same backend. Rendezvous (highest random weight)
hashing moves only the keys of a backend that leaves or joins, never the others.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warden.fleet.backend import Backend


def prefix_key(body: dict, chars: int) -> int | None:
    """A key for the start of the prompt as the engine sees it (its prefix cache matches
    from the first token): the first `chars` characters of the messages, roles included, or
    of a completion's prompt. None when there is no text prompt to key on."""
    messages = body.get("messages")
    if type(messages) is list:
        parts: list[str] = []
        size = 0
        for message in messages:
            if type(message) is not dict:
                break
            content = message.get("content")
            if type(content) is not str:
                break  # multimodal parts: key on what came before them
            parts += (str(message.get("role")), ":", content, "\n")
            size += len(content)
            if size >= chars:
                break
        text = "".join(parts)[:chars]
    else:
        prompt = body.get("prompt")
        if type(prompt) is not str:
            return None
        text = prompt[:chars]
    if not text:
        return None
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def session_key(value: str | bytes) -> int:
    return zlib.crc32(value.encode("utf-8", "surrogatepass") if isinstance(value, str)
                      else value)


_MASK = 2**64 - 1


def _mix(value: int) -> int:
    """splitmix64's finalizer: CRC-32 is linear, so (key, backend) pairs are mixed before
    being compared, or some backends would win most keys."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def rendezvous(key: int, candidates: Sequence[Backend]) -> Backend:
    """The candidate `key` belongs to."""
    best = candidates[0]
    best_weight = -1
    for backend in candidates:
        weight = _mix((backend.name_hash << 32) | key)
        if weight > best_weight:
            best, best_weight = backend, weight
    return best
