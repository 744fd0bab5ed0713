"""Incremental SSE decoder (pure: bytes in, `data` payloads out; no I/O, no clock).

It never holds more than the one incomplete event at the tail of what it was fed. Only `data:`
fields matter to the gateway; `event:`, `id:`, `retry:` and comments are skipped.
"""

from __future__ import annotations


class SseDecoder:
    __slots__ = ("tail",)

    def __init__(self) -> None:
        self.tail = b""  # an event that has started but not ended

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data payload of every event completed by `chunk`, in order."""
        if 13 in chunk:  # CR (a byte as an int: a memchr, no argument parsing)
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buffer = self.tail + chunk if self.tail else chunk
        events = buffer.split(b"\n\n")
        self.tail = events.pop()
        payloads = []
        for event in events:
            payload = _data_of(event)
            if payload is not None:
                payloads.append(payload)
        return payloads

    @property
    def pending(self) -> int:
        """Bytes of an event that has started but not ended."""
        return len(self.tail)


def _data_of(event: bytes) -> bytes | None:
    if event.startswith(b"data:") and 10 not in event:  # the common one-line event
        return event[6:] if event[5:6] == b" " else event[5:]
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            lines.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(lines) if lines else None
