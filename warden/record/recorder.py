"""The flight recorder: every proxied request's `start` and `end` records, on disk, with no
disk I/O on the event loop.

Each record is rendered to one JSON line when it happens (`started`, before the request is
forwarded; `ended`, once it is over) and appended to a buffer of chunks sealed at 64 KB
(buffer.py); every `flush_interval` the chunks go to each of the recorder's sinks (sink.py;
sinks.py builds them from the settings): the files' writer thread (writer.py), which only
writes bytes and looks after the files (`RecordFiles`: rotation, compression, the cap), and
PostgreSQL if configured. Lines copied into chunks, not held as a list: a line copied at once
frees its memory while it is still in the CPU's cache, for the next record to reuse, where
thousands of lines held apart until the flush each took fresh memory and were freed cold by
the writer (3-4 µs more per request, compiled, with 4,000 records a flush:
`bench.hot_path`); and the writer writes the chunks as they are, with no join.

Rendering on the loop, not on the writer: it is a few microseconds a record either way, and a
writer thread doing Python work contends for the GIL with the event loop (on one core, every
handoff is a context switch), which cost several times more; a thread that only sits in
`write()` releases the GIL. Rendering at the moment also means a record reads the exchange
from the loop's own thread, never while it changes.

Bounded: when `queue_size` records or `queue_bytes` of them are waiting (queued or with the
files' writer: the files are the record of reference, and other sinks bound queues of their
own), new ones are dropped and counted (`dropped`, exported as a metric), never silently and
never by blocking the proxy. Every loss, whatever its cause (the writer's too: writer.py), is
summarised in the log: at once the first time, then at most once a minute while losses go on.

What a SIGKILL of the gateway can lose: the records queued since the last flush (at most
`flush_interval`, 0.2 s by default) and the batch being written at that moment (a torn last
line, which the reader skips). Written records are in the OS's page cache: they survive the
process, not a power cut (no fsync per batch, by design).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import orjson

from warden.backoff import Throttle
from warden.config.recorder_schema import RecorderSpec
from warden.exchange import Exchange, NativeListener
from warden.record.buffer import RecordBuffer
from warden.record.files import RecordFiles
from warden.record.render import Clock, Renderer
from warden.record.sink import Batch, Sink
from warden.record.sinks import build_sinks
from warden.record.writer import FileSink

# (Bound once: compiled, `module.function` is an attribute look-up on every call.)
dumps: Final = orjson.dumps
APPEND_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE

log = logging.getLogger("warden.record")


class Recorder(NativeListener):
    def __init__(self, spec: RecorderSpec, sinks: Sequence[Sink] | None = None):
        """`sinks`: where the records go (by default, what `spec` asks for: sinks.py); one of
        them is the files (a `FileSink`)."""
        self.spec = spec
        self._clock = Clock().sync()
        self._render = Renderer(spec.headers, spec.response, self._clock)
        self._pending = RecordBuffer()  # the records since the last flush, one line each
        # How many records, and bytes of them, may be pending: the queue's bounds less what the
        # files' writer still has (recomputed at each flush, so a record costs two
        # comparisons). The bytes bound the memory a disk that hangs can take: records carry
        # bodies, and a count alone let 100,000 of them take gigabytes.
        self._room = spec.queue_size
        self._room_bytes = spec.queue_bytes
        self.hears_started = True  # (an ExchangeListener: the start record is write-ahead)
        # The largest body written verbatim; 0 while free disk is below the floor (the
        # writer checks after each batch; read here at each flush).
        self.body_limit = spec.max_file_size // 4
        # Counters of the loop's side (the sinks keep their own).
        self.handed = 0            # records handed to the sinks
        self.handed_bytes = 0      # ... and their bytes
        self.dropped = 0           # records dropped: queue full
        self.unrendered = 0        # records that could not be rendered (a bug)
        self.bodies_omitted = 0    # bodies left out: low disk
        self._lost_said = 0        # losses the log has told of
        self._lost_told = Throttle()  # ... at most once a minute
        self.sinks: tuple[Sink, ...] = tuple(build_sinks(spec) if sinks is None else sinks)
        self.file_sink: FileSink = _the_files(self.sinks)
        # Told of each flush (`note(cause, started)`, time.perf_counter()): the event loop's
        # probe (observe.loop_probe), which blames stalls on what ran in them.
        self.note: Callable[[str, float], None] | None = None

    # -- the event loop's side -------------------------------------------------------------

    def started(self, exchange: Exchange) -> None:
        pending = self._pending
        if pending.count >= self._room or pending.bytes >= self._room_bytes:
            self.dropped += 1
            return
        body_limit = self.body_limit
        try:
            record = self._render.start(exchange, body_limit)
        except Exception:
            self._unrenderable()
            return
        if body_limit == 0 and (record.get("body_omitted") == "low disk"
                                or "forwarded_body_omitted" in record):
            self.bodies_omitted += 1
        pending.add(dumps(record, option=APPEND_NEWLINE))

    def ended(self, exchange: Exchange) -> None:
        pending = self._pending
        if pending.count >= self._room or pending.bytes >= self._room_bytes:
            self.dropped += 1
            return
        body_limit = self.body_limit
        try:
            record = self._render.end(exchange, body_limit)
        except Exception:
            self._unrenderable()
            return
        if body_limit == 0 and "response_omitted" in record:
            self.bodies_omitted += 1
        pending.add(dumps(record, option=APPEND_NEWLINE))

    @property
    def written(self) -> int:
        """Records the files' writer is done with (written or lost)."""
        return self.file_sink.done

    @property
    def files(self) -> RecordFiles | None:
        return self.file_sink.files

    @property
    def lost(self) -> int:
        """Records lost on the loop's side or by the files (another sink's losses are its
        own: the files still have those records)."""
        return self.dropped + self.unrendered + self.file_sink.lost

    @property
    def queued(self) -> int:
        return self._pending.count + self.handed - self.file_sink.done

    @property
    def queued_bytes(self) -> int:
        return self._pending.bytes + self.handed_bytes - self.file_sink.done_bytes

    def open(self) -> None:
        """From the event loop: open each sink in turn (sinks.py puts the files first: an
        unwritable directory stops the start before anything else has started)."""
        for sink in self.sinks:
            sink.open()

    async def run(self) -> None:
        """Hand what is pending to the sinks every flush interval."""
        while True:
            await asyncio.sleep(self.spec.flush_interval)
            self.flush()

    def flush(self) -> None:
        started = time.perf_counter()
        self._clock.sync()  # the wall clock may have been stepped
        file_sink = self.file_sink
        if self._pending.count:
            count = self._pending.count
            batch = Batch(self._pending.take(), count)
            self.handed += count
            self.handed_bytes += batch.size
            for sink in self.sinks:
                sink.submit(batch)
        self._room = self.spec.queue_size - (self.handed - file_sink.done)
        self._room_bytes = self.spec.queue_bytes - (self.handed_bytes - file_sink.done_bytes)
        self.body_limit = file_sink.body_limit
        self.report_losses(time.monotonic())
        if self.note is not None:
            self.note("recorder_flush", started)

    def report_losses(self, now: float) -> None:
        """Any records lost since the log last said: at once the first time, then at most
        once a minute (a full disk or queue loses records on every flush)."""
        lost = self.lost
        if lost == self._lost_said or not self._lost_told.ready(now):
            return
        writer = self.file_sink.writer
        log.warning("flight recorder: %d records lost since the last report, %d in all "
                    "(queue full: %d, disk full: %d, disk cap: %d, write errors: %d, render "
                    "errors: %d)", lost - self._lost_said, lost, self.dropped,
                    writer.disk_full, writer.refused, writer.failed, self.unrendered)
        self._lost_said = lost

    def reopen(self) -> None:
        """SIGHUP: an external logrotate moved the open file; the writer starts a new one."""
        self.file_sink.reopen()

    async def close(self) -> None:
        """Hand over everything pending, then close the sinks, together (each within its own
        deadline)."""
        self.flush()
        await asyncio.gather(*[sink.close() for sink in self.sinks])
        self.report_losses(float("inf"))  # whatever the last minute lost

    def _unrenderable(self) -> None:
        self.unrendered += 1
        if self.unrendered == 1:
            log.exception("flight recorder: a record could not be rendered")


def _the_files(sinks: Sequence[Sink]) -> FileSink:
    """The files among `sinks`: the record of reference (their backlog bounds the queue, free
    disk the bodies, and their losses are the recorder's)."""
    files = [sink for sink in sinks if isinstance(sink, FileSink)]
    if len(files) != 1:
        raise ValueError(f"the flight recorder needs one FileSink among its sinks, not "
                         f"{len(files)}")
    return files[0]
