"""The flight recorder's records since its last flush: whole lines, in chunks of bounded size.

Why chunks, and not one growing `bytearray`: a bytearray grows by `realloc`, an eighth at a
time, so a flush's megabytes were copied about nine times over as they grew, each time into
memory fresh from the kernel (a page fault per page, the freed buffer given back to the kernel
once the writer was done with it). perf under wrk put 97% of the gateway's page faults there,
and that copying in the event loop's longest turns (2-5 ms: the `unknown` stalls of
`bench.loop_stalls`). A chunk is sealed once it holds `CHUNK` bytes: the copying of its growth
stays within a cache-sized buffer, and no single append copies more than that.

Appending stays `+=` (CPython's bytearray concatenation, in C). Writing lines in place into a
chunk allocated at its full size was measured and is slower, compiled: slice assignment
copies a `bytes` value into a temporary bytearray first (CPython 3.11), and a memoryview's
slice assignment costs ~0.2 µs a line more than `+=` (a microbenchmark of 620-byte lines,
compiled: 107 ns a line into one growing buffer, 130 into these chunks, 302 through a
memoryview, 524 by slice assignment).

Rules: every piece holds whole lines (a sink may write or send each on its own); a piece is
never changed once sealed (every sink reads the same ones, on other threads too).
"""

from __future__ import annotations

# A chunk's size: its growth's copies stay in the CPU's cache, and it comes from the heap
# (under glibc's mmap threshold, 128 KB); ~100 summary records.
CHUNK = 64 * 1024


class RecordBuffer:
    def __init__(self, chunk_size: int = CHUNK):
        self._chunk_size = chunk_size
        self._chunk = bytearray()
        self._sealed: list[bytes | bytearray] = []
        self.count = 0  # lines since the last `take`

    def add(self, line: bytes) -> None:
        """One record's line (ending in a newline). Cost rule: this runs twice per request:
        one concatenation and one length test."""
        chunk = self._chunk
        if len(line) >= self._chunk_size:  # a piece of its own (a large body): not copied
            self._seal()
            self._sealed.append(line)
        else:
            chunk += line
            if len(chunk) >= self._chunk_size:
                self._sealed.append(chunk)
                self._chunk = bytearray()
        self.count += 1

    def take(self) -> list[bytes | bytearray]:
        """Everything added since the last `take`, in order, as pieces of whole lines (none
        empty); the buffer starts again."""
        self._seal()
        pieces, self._sealed = self._sealed, []
        self.count = 0
        return pieces

    def _seal(self) -> None:
        if self._chunk:
            self._sealed.append(self._chunk)
            self._chunk = bytearray()
