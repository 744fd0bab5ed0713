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

from warden.stream.sse import MAX_EVENT, HeldEvent

USAGE_ONLY = (b'"choices":[]', b'"usage":{')


class UsageStripper:
    __slots__ = ("_held", "passing", "stripped")

    def __init__(self) -> None:
        self._held = HeldEvent()  # an event begun but not ended
        self.passing = False    # gave up cutting: everything passes (events cut too)
        self.stripped = 0       # usage events taken out

    def feed(self, chunk: bytes) -> bytes:
        """What of `chunk` (and what was held) the client gets now."""
        if self.passing:
            return chunk
        if 13 in chunk:  # CR (a byte as an int: a memchr, no argument parsing)
            return self._give_up(chunk)
        held = self._held
        if held.start:
            ended = held.add(chunk)
            if ended is None:
                return self._give_up(b"") if held.size > MAX_EVENT else b""
            chunk = ended
        end = chunk.rfind(b"\n\n")
        if end < 0:
            if len(chunk) > MAX_EVENT:
                return self._give_up(chunk)
            held.hold(chunk)
            return b""
        whole = chunk[:end + 2]
        held.hold(chunk[end + 2:])
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
        return self._held.take()

    def _give_up(self, chunk: bytes) -> bytes:
        """Everything passes from now on: what was held, then `chunk`."""
        self.passing = True
        return self._held.take() + chunk
