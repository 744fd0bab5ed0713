"""Taking the usage event out of an event stream whose client did not ask for it.

The gateway asks every stream for its usage (`stream_options.include_usage`) when it must
count tokens (limits), and the client that did not ask must get the stream it would have got:
every event as the backend sent it, byte for byte, but the one that carries only the usage
(`"choices":[]` and a `usage`). Events are cut at their blank line (`\\n\\n`, as vLLM writes
them); an event is passed on once it is whole (vLLM writes one event per chunk, so nothing
waits in practice). A stream with a CR in it is passed on untouched from there (its line ends
are not the ones this cuts at): the client then sees the usage event, which the SDKs accept.
"""

from __future__ import annotations

USAGE_ONLY = (b'"choices":[]', b'"usage":{')


class UsageStripper:
    __slots__ = ("_pending", "passing", "stripped")

    def __init__(self) -> None:
        self._pending = b""     # an event begun but not ended
        self.passing = False    # gave up cutting: everything passes (events cut too)
        self.stripped = 0       # usage events taken out

    def feed(self, chunk: bytes) -> bytes:
        """What of `chunk` (and what was held) the client gets now."""
        if self.passing:
            return chunk
        if 13 in chunk:  # CR (a byte as an int: a memchr, no argument parsing)
            self.passing = True
            held, self._pending = self._pending, b""
            return held + chunk
        data = self._pending + chunk if self._pending else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._pending = data
            return b""
        whole, self._pending = data[:end + 2], data[end + 2:]
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
        held, self._pending = self._pending, b""
        return held
