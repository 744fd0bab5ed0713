"""Where the flight recorder's records go: one `Sink` per destination. The files (`FileSink`,
writer.py) are always one; PostgreSQL (`PostgresSink`, postgres.py) is optional; sinks.py
builds them from the settings by name.

This module imports nothing of Warden's: every sink and the recorder import it, it imports
none of them.
"""

from __future__ import annotations

from typing import Protocol


class Batch:
    """What one flush hands over: record lines (one JSON object each) in `pieces` of whole
    lines (buffer.py), how many lines, and how many bytes."""

    def __init__(self, pieces: list[bytes], count: int):
        self.pieces = pieces
        self.count = count
        self.size = sum(len(piece) for piece in pieces)


class Sink(Protocol):
    """A destination of the flight recorder's records.

    The recorder renders each record once, on the event loop, and every flush hands each sink
    the same `Batch`; every call below comes from the event loop.

    - `name`: the sink's name in `sinks.SINKS` and in the log (`files`, `postgres`).
    - `open()`: once, from the running loop, before the first batch: starts the sink's own
      worker (a thread, a task). A sink that cannot work at all (an unwritable directory)
      raises here, which stops the gateway's start.
    - `submit(batch)`: never blocks, never raises, never changes the batch (every sink reads
      the same one; the recorder starts a new buffer after each flush). A sink that cannot
      keep up drops records and counts them: a slow destination costs the proxy nothing.
    - `async close()`: once, after the last batch: what is queued is written within the
      sink's own deadline, the rest dropped, counted and logged; the worker has stopped when
      it returns. The recorder closes its sinks together, so none waits on another's deadline.
    - `done`, `lost`: records the sink is finished with (written or dropped), and of those the
      dropped ones; read from the loop at any time (a sink's own counters give the causes).
    """

    @property
    def name(self) -> str: ...

    @property
    def done(self) -> int: ...

    @property
    def lost(self) -> int: ...

    def open(self) -> None: ...

    def submit(self, batch: Batch) -> None: ...

    async def close(self) -> None: ...
