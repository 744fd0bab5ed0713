"""The flight recorder: every proxied request's `start` and `end` records, on disk, with no
disk I/O on the event loop.

Each record is rendered to one JSON line when it happens (`started`, before the request is
forwarded; `ended`, once it is over) and appended to one buffer; every `flush_interval` the
buffer goes to the writer thread, which only writes bytes and looks after the files
(`RecordFiles`: rotation, compression, the cap). One buffer, not a list of lines: a line
copied into it at once frees its memory while it is still in the CPU's cache, for the next
record to reuse, where thousands of lines held apart until the flush each took fresh memory
and were freed cold by the writer (3-4 µs more per request, compiled, with 4,000 records a
flush: `bench.hot_path`); and the writer writes the buffer as it is, with no join.

Rendering on the loop, not on the writer: it is a few microseconds a record either way, and a
writer thread doing Python work contends for the GIL with the event loop (on one core, every
handoff is a context switch), which cost several times more; a thread that only sits in
`write()` releases the GIL. Rendering at the moment also means a record reads the exchange
from the loop's own thread, never while it changes.

Bounded: when `queue_size` records are waiting (queued or with the writer), new ones are
dropped and counted (`dropped`, exported as a metric, and one log line per flush that
dropped some), never silently and never by blocking the proxy.

What a SIGKILL of the gateway can lose: the records queued since the last flush (at most
`flush_interval`, 0.2 s by default) and the batch being written at that moment (a torn last
line, which the reader skips). Written records are in the OS's page cache: they survive the
process, not a power cut (no fsync per batch, by design).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading

import orjson

from warden.config.recorder_schema import RecorderSpec
from warden.proxy.exchange import Exchange
from warden.record.files import RecordFiles
from warden.record.postgres import PostgresSink
from warden.record.render import Clock, Renderer

log = logging.getLogger("warden.record")

_REOPEN = "reopen"


class Recorder:
    def __init__(self, spec: RecorderSpec):
        self.spec = spec
        self._clock = Clock().sync()
        self._render = Renderer(spec.headers, spec.response, self._clock)
        self._pending = bytearray()  # the records since the last flush, one line each
        self._pending_count = 0
        # How many records may be pending: the queue's size less what the writer still has
        # (recomputed at each flush, so a record costs one comparison).
        self._room = spec.queue_size
        # The largest body written verbatim; 0 while free disk is below the floor (the
        # writer checks after each batch).
        self.body_limit = spec.max_file_size // 4
        # Counters: each is written by one thread only (the loop or the writer).
        self.handed = 0            # records handed to the writer (loop)
        self.written = 0           # records the writer is done with (writer)
        self.dropped = 0           # records dropped: queue full (loop)
        self.unrendered = 0        # records that could not be rendered (loop; a bug)
        self.bodies_omitted = 0    # bodies left out: low disk (loop)
        self.refused = 0           # records dropped: the disk cap refused them (writer)
        self.failed = 0            # records lost to a write error (writer)
        self._lost_logged = 0
        self._batches: queue.SimpleQueue[Batch | str | None] = queue.SimpleQueue()
        self.files: RecordFiles | None = None
        self._writer: threading.Thread | None = None
        self.sink: PostgresSink | None = None
        self._sink_task: asyncio.Task[None] | None = None

    # -- the event loop's side -------------------------------------------------------------

    def started(self, exchange: Exchange) -> None:
        if self._pending_count >= self._room:
            self.dropped += 1
            return
        body_limit = self.body_limit
        try:
            record = self._render.start(exchange, body_limit)
        except Exception:
            self._unrenderable()
            return
        if body_limit == 0 and record.get("body_omitted") == "low disk":
            self.bodies_omitted += 1
        self._pending += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        self._pending_count += 1

    def ended(self, exchange: Exchange) -> None:
        if self._pending_count >= self._room:
            self.dropped += 1
            return
        try:
            record = self._render.end(exchange)
        except Exception:
            self._unrenderable()
            return
        self._pending += orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        self._pending_count += 1

    @property
    def queued(self) -> int:
        return self._pending_count + self.handed - self.written

    def start(self) -> None:
        """From the event loop: open the files, start the writer (and the PostgreSQL sink)."""
        self.files = RecordFiles(self.spec)
        self._writer = threading.Thread(target=self._write_loop, name="warden-recorder",
                                        daemon=True)
        self._writer.start()
        if self.spec.postgres is not None:
            self.sink = PostgresSink(self.spec.postgres)
            self._sink_task = asyncio.get_running_loop().create_task(self.sink.run())

    async def run(self) -> None:
        """Hand what is pending to the writer every flush interval."""
        while True:
            await asyncio.sleep(self.spec.flush_interval)
            self.flush()

    def flush(self) -> None:
        self._clock.sync()  # the wall clock may have been stepped
        if self._pending_count:
            batch = Batch(self._pending, self._pending_count)
            self._pending, self._pending_count = bytearray(), 0
            self.handed += batch.count
            self._batches.put(batch)
            if self.sink is not None:
                self.sink.submit(batch.lines, batch.count)
        self._room = self.spec.queue_size - (self.handed - self.written)
        lost = self.dropped + self.unrendered + self.refused + self.failed
        if lost != self._lost_logged:
            log.warning("flight recorder: %d records lost so far (queue full: %d, disk cap: "
                        "%d, write errors: %d, render errors: %d)", lost, self.dropped,
                        self.refused, self.failed, self.unrendered)
            self._lost_logged = lost

    def reopen(self) -> None:
        """SIGHUP: an external logrotate moved the open file; the writer starts a new one."""
        self._batches.put(_REOPEN)

    async def stop(self) -> None:
        """Write everything pending, then stop the writer."""
        self.flush()
        self._batches.put(None)
        if self.sink is not None and self._sink_task is not None:
            self.sink.stop()
            await self._sink_task
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)

    def _unrenderable(self) -> None:
        self.unrendered += 1
        if self.unrendered == 1:
            log.exception("flight recorder: a record could not be rendered")

    # -- the writer thread: bytes to files, nothing else -----------------------------------

    def _write_loop(self) -> None:
        files = self.files
        assert files is not None
        while True:
            batch = self._batches.get()
            if batch is None:
                break
            if isinstance(batch, str):  # _REOPEN
                try:
                    files.reopen()
                except OSError:
                    log.exception("flight recorder: reopen failed")
                continue
            try:
                self._write(files, batch.lines)
                low_disk = files.free_disk() < self.spec.min_free_disk
                self.body_limit = 0 if low_disk else self.spec.max_file_size // 4
            except Exception:
                log.exception("flight recorder: write failed")
                self.failed += batch.count
            finally:
                self.written += batch.count
        files.close()

    def _write(self, files: RecordFiles, lines: bytearray) -> None:
        """In pieces of whole lines of at most a quarter file each, so that a piece always
        fits under the cap (a single longer line is a piece of its own)."""
        limit = self.spec.max_file_size // 4
        view = memoryview(lines)
        start = 0
        while start < len(lines):
            end = lines.rfind(b"\n", start, start + limit) + 1
            if end <= start:  # one line longer than the limit
                end = lines.find(b"\n", start + limit) + 1 or len(lines)
            if not files.write(view[start:end]):
                self.refused += lines.count(b"\n", start, end)
            start = end


class Batch:
    """What one flush hands over: record lines, and how many."""

    def __init__(self, lines: bytearray, count: int):
        self.lines = lines
        self.count = count
