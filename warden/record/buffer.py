"""The flight recorder's records since its last flush: whole lines, in chunks of bounded size.

Lines are held as they come (a list of the `bytes` each record was rendered to) and joined
into one chunk once they add up to `CHUNK` bytes. Why not one growing `bytearray`: it grows by
`realloc`, an eighth at a time, so a flush's megabytes were copied about nine times over as
they grew, each time into memory fresh from the kernel (a page fault per page). perf under wrk
put 97% of the gateway's page faults there, and that copying in the event loop's longest
turns (2-5 ms: the `unknown` stalls of `bench.loop_stalls`). Why not a `bytearray` per chunk
either (`+=` of each line, sealed at `CHUNK`): its growth still copied each line ~8 times
within the chunk, and `+=` goes through the number protocol; ~1,500 instructions a line,
compiled, where an append and one `join` per chunk cost ~300 (`bench.instructions`).

What holding lines costs in memory: at most one chunk's worth (~100 summary records) waits in
the list; the join copies them once while they are still in the CPU's cache, and frees them
for the next records to reuse (thousands of lines held until the flush each took fresh memory,
freed cold by the writer: 3-4 µs more per request, compiled, `bench.hot_path`).

Rules: every piece holds whole lines (a sink may write or send each on its own); a piece is
never changed once taken (every sink reads the same ones, on other threads too).
"""

from __future__ import annotations

# A chunk's size: its lines are joined while in the CPU's cache, and it comes from the heap
# (under glibc's mmap threshold, 128 KB); ~100 summary records.
CHUNK = 64 * 1024


class RecordBuffer:
    def __init__(self, chunk_size: int = CHUNK):
        self._chunk_size = chunk_size
        self._lines: list[bytes] = []   # the chunk being filled, a line each
        self._size = 0                  # ... and its bytes
        self._sealed: list[bytes] = []
        self.count = 0  # lines since the last `take`
        self.bytes = 0  # ... and their bytes

    def add(self, line: bytes) -> None:
        """One record's line (ending in a newline). Cost rule: this runs twice per request:
        an append, two additions and two comparisons."""
        size = len(line)
        self.count += 1
        self.bytes += size
        if size >= self._chunk_size:  # a piece of its own (a large body): not copied
            self._seal()
            self._sealed.append(line)
            return
        self._lines.append(line)
        self._size += size
        if self._size >= self._chunk_size:
            self._seal()

    def take(self) -> list[bytes]:
        """Everything added since the last `take`, in order, as pieces of whole lines (none
        empty); the buffer starts again."""
        self._seal()
        pieces, self._sealed = self._sealed, []
        self.count = self.bytes = 0
        return pieces

    def _seal(self) -> None:
        lines = self._lines
        if lines:
            self._sealed.append(b"".join(lines))
            self._lines = []
            self._size = 0
