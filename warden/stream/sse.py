"""Incremental SSE decoder (pure: bytes in, `data` payloads out; no I/O, no clock).

It never holds more than the one incomplete event at the tail of what it was fed, and at most
`MAX_EVENT` bytes of it: a longer event is skipped to its end, not read, so a backend's
endless event takes neither memory nor time. (vLLM's chat events are a token or a few each,
but a Responses stream's last event repeats the whole response, its usage near the end, and a
first event can carry a long prompt's logprobs: megabytes, read whole.) Line ends are LF, CRLF
or CR, a CRLF split between two reads included. Only `data:` fields matter to the gateway;
`event:`, `id:`, `retry:` and comments are skipped.
"""

from __future__ import annotations

from typing import Final

MAX_EVENT: Final = 16 << 20


class HeldEvent:
    """An event begun but not ended (the decoder's, the usage stripper's): its first bytes
    (`start`, empty when none is held) and the pieces that came after, kept as they came, so
    that each read is scanned once for the event's end and never copied again per read."""

    __slots__ = ("_more", "size", "start")

    def __init__(self) -> None:
        self.start = b""
        self._more: list[bytes] = []
        self.size = 0   # its bytes

    def hold(self, start: bytes) -> None:
        """Hold an event's first bytes (b"": hold none)."""
        self.start, self._more, self.size = start, [], len(start)

    def take(self) -> bytes:
        """Everything held, joined; none is held after."""
        held = self.start + b"".join(self._more) if self._more else self.start
        self.hold(b"")
        return held

    def add(self, chunk: bytes) -> bytes | None:
        """With an event held: if `chunk` ends it (a blank line in it, or across the two),
        all of it and `chunk`, joined, and none is held after; else None, and `chunk` is held
        too (`size` says how much is)."""
        more = self._more
        if b"\n\n" in chunk or ((more[-1] if more else self.start)[-1] == 10
                                 and chunk[:1] == b"\n"):
            return self.take() + chunk
        if chunk:
            more.append(chunk)
            self.size += len(chunk)
        return None


class SseDecoder:
    __slots__ = ("_cr", "_lf", "held", "skipped", "skipping")

    def __init__(self) -> None:
        self.held = HeldEvent()  # an event that has started but not ended
        self.skipping = False   # an event over MAX_EVENT, until its end
        self.skipped = 0        # events skipped for their size
        self._cr = False        # the last chunk ended in CR (an LF next is the same line end)
        self._lf = False        # skipping: the last chunk ended a line

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data payload of every event completed by `chunk`, in order."""
        if self._cr and chunk:
            self._cr = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if 13 in chunk:  # CR (a byte as an int: a memchr, no argument parsing)
            self._cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self.skipping:
            chunk = self._skip(chunk)
            if self.skipping:
                return []
        held = self.held
        if held.start:
            ended = held.add(chunk)
            if ended is None:
                if held.size > MAX_EVENT:
                    self._skip_event(chunk.endswith(b"\n"))
                return []
            chunk = ended
        events = chunk.split(b"\n\n")
        tail = events.pop()
        if len(tail) > MAX_EVENT:
            self._skip_event(tail.endswith(b"\n"))
        else:
            held.hold(tail)
        payloads = []
        for event in events:
            payload = _data_of(event)
            if payload is not None:
                payloads.append(payload)
        return payloads

    @property
    def pending(self) -> int:
        """Bytes of an event that has started but not ended (0: at an event boundary)."""
        return 1 if self.skipping else self.held.size

    def _skip_event(self, ends_line: bool) -> None:
        self.held.hold(b"")
        self.skipping = True
        self.skipped += 1
        self._lf = ends_line

    def _skip(self, chunk: bytes) -> bytes:
        """What follows the skipped event's end in `chunk` (b"" and still skipping if none)."""
        if self._lf and chunk.startswith(b"\n"):
            end = 1
        else:
            end = chunk.find(b"\n\n") + 2
            if end == 1:
                self._lf = chunk.endswith(b"\n") or (self._lf and not chunk)
                return b""
        self.skipping = False
        return chunk[end:]


def _data_of(event: bytes) -> bytes | None:
    if event.startswith(b"data:") and 10 not in event:  # the common one-line event
        return event[6:] if event[5:6] == b" " else event[5:]
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            lines.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(lines) if lines else None
