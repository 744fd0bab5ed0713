"""Taking the usage event out of an event stream whose client did not ask for it.

The gateway asks every stream for its usage (`stream_options.include_usage`) when it must
count tokens (limits), and the client that did not ask must get the stream it would have got:
every event as the backend sent it, byte for byte, but the one that carries only the usage
(`"choices":[]` and a `usage`). Events are cut at their blank line (`\\n\\n`, as vLLM writes
them); an event is passed on once it is whole (vLLM writes one event per chunk, so nothing
waits in practice). A stream with a CR in it is passed on untouched from there (its line ends
are not the ones this cuts at), and so is one with an event longer than `MAX_EVENT` (one held
whole would take the gateway's memory and, scanned again per read, its time): the client
then sees the usage event, which the SDKs accept.
"""

from __future__ import annotations

from warden.stream.sse import MAX_EVENT, ends_held_event

USAGE_ONLY = (b'"choices":[]', b'"usage":{')


class UsageStripper:
    __slots__ = ("_held", "_pending", "_size", "passing", "stripped")

    def __init__(self) -> None:
        self._pending = b""     # an event begun but not ended
        self._held: list[bytes] = []  # ... its pieces since (each read scanned once), and
        self._size = 0          # its bytes
        self.passing = False    # gave up cutting: everything passes (events cut too)
        self.stripped = 0       # usage events taken out

    def feed(self, chunk: bytes) -> bytes:
        """What of `chunk` (and what was held) the client gets now."""
        if self.passing:
            return chunk
        if 13 in chunk:  # CR (a byte as an int: a memchr, no argument parsing)
            return self._give_up(chunk)
        pending = self._pending
        if pending:
            held = self._held
            if not ends_held_event(held[-1] if held else pending, chunk):
                if chunk:  # (no end in it: held as it is)
                    held.append(chunk)
                    self._size += len(chunk)
                    if self._size > MAX_EVENT:
                        return self._give_up(b"")
                return b""
            if held:
                chunk = pending + b"".join(held) + chunk
                self._held = []
            else:
                chunk = pending + chunk
        end = chunk.rfind(b"\n\n")
        if end < 0:
            if len(chunk) > MAX_EVENT:
                return self._give_up(chunk, held=b"")
            self._pending, self._size = chunk, len(chunk)
            return b""
        whole, self._pending = chunk[:end + 2], chunk[end + 2:]
        self._size = len(self._pending)
        if whole.find(USAGE_ONLY[1]) < 0:  # (most chunks: no usage in them at all)
            return whole
        kept = []
        for event in whole[:-2].split(b"\n\n"):
            if event.find(USAGE_ONLY[0]) >= 0 and event.find(USAGE_ONLY[1]) >= 0 \
                    and event.startswith(b"data:"):
                self.stripped += 1
                continue
            kept.append(event + b"\n\n")
        return b"".join(kept)

    def rest(self) -> bytes:
        """At the end of the stream: what is still held (an event never ended)."""
        held = self._pending + b"".join(self._held)
        self._pending, self._held, self._size = b"", [], 0
        return held

    def _give_up(self, chunk: bytes, held: bytes | None = None) -> bytes:
        """Everything passes from now on: what was held, then `chunk`."""
        self.passing = True
        if held is None:
            held = self._pending + b"".join(self._held)
        self._pending, self._held, self._size = b"", [], 0
        return held + chunk
