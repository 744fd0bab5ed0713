"""The flight recorder's records since its last flush: whole lines, in chunks allocated once.

Why chunks, and not one growing `bytearray`: a bytearray grows by `realloc`, an eighth at a
time, so a flush's megabytes were copied about nine times over, each time into memory fresh
from the kernel (a page fault per page). perf under wrk put 97% of the gateway's page faults
there, and that copying in the event loop's longest turns (2-5 ms: the `unknown` stalls of
`bench.loop_stalls`). A chunk is allocated at its full size and written in place (one copy
per line); a line that does not fit seals it and starts the next. Sealed chunks go to the
sinks as they are; once the writer has freed them, the allocator hands their memory back warm.

Rules: every piece holds whole lines (a sink may write or send each on its own); a piece is
never changed once sealed (every sink reads the same ones, on other threads too).
"""

from __future__ import annotations

# A chunk's size: under glibc's mmap threshold (128 KB), so chunks come from the heap and reuse
# freed memory; ~100 summary records.
CHUNK = 64 * 1024


class RecordBuffer:
    def __init__(self, chunk_size: int = CHUNK):
        self._chunk_size = chunk_size
        self._chunk = bytearray(chunk_size)
        self._used = 0
        self._sealed: list[bytes | bytearray] = []
        self.count = 0  # lines since the last `take`

    def add(self, line: bytes) -> None:
        """One record's line (ending in a newline). Cost rule: this runs twice per request."""
        used = self._used
        end = used + len(line)
        if end <= self._chunk_size:
            self._chunk[used:end] = line
            self._used = end
        else:
            self._spill(line)
        self.count += 1

    def take(self) -> list[bytes | bytearray]:
        """Everything added since the last `take`, in order, as pieces of whole lines (none
        empty); the buffer starts again."""
        self._seal()
        pieces, self._sealed = self._sealed, []
        self.count = 0
        return pieces

    def _spill(self, line: bytes) -> None:
        self._seal()
        if len(line) >= self._chunk_size:  # a piece of its own (a large body)
            self._sealed.append(line)
        else:
            self._chunk[:len(line)] = line
            self._used = len(line)

    def _seal(self) -> None:
        """The current chunk, cut to what it holds, joins the sealed pieces; a new one is
        started (nothing is done while it is empty)."""
        used = self._used
        if used == 0:
            return
        chunk = self._chunk
        del chunk[used:]  # (no copy when at least half full; else a small one)
        self._sealed.append(chunk)
        self._chunk = bytearray(self._chunk_size)
        self._used = 0
