"""The flight recorder: every proxied request's `start` and `end` records, on disk, written
off the hot path.

The event loop only appends `(kind, exchange)` to a list (`started`, `ended`: no rendering, no
I/O, no lock); every `flush_interval` that list is handed to the writer thread, which renders,
serializes and writes it (`RecordFiles`), one `write` per batch. A `start` is queued before the
request is forwarded, so the evidence is on its way to disk even if the request then takes
the engine down.

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
import time

import orjson

from warden.config.schema import RecorderSpec
from warden.proxy.exchange import Exchange
from warden.record.files import RecordFiles
from warden.record.render import end_record, start_record

log = logging.getLogger("warden.record")

_START, _END = 0, 1
_REOPEN = "reopen"


class Recorder:
    def __init__(self, spec: RecorderSpec):
        self.spec = spec
        self._headers = tuple(name.lower() for name in spec.headers)
        self._pending: list[tuple[int, Exchange]] = []
        # Counters: each is written by one thread only (the loop or the writer).
        self.handed = 0            # records handed to the writer (loop)
        self.written = 0           # records written (writer)
        self.dropped = 0           # records dropped: queue full (loop)
        self.refused = 0           # records dropped: the disk cap refused them (writer)
        self.failed = 0            # records lost to a write error (writer)
        self.bodies_omitted = 0    # bodies left out: low disk (writer)
        self._dropped_logged = 0
        self._batches: queue.SimpleQueue[list | str | None] = queue.SimpleQueue()
        self.files: RecordFiles | None = None
        self._thread: threading.Thread | None = None

    # -- the event loop's side (hot path: two appends per request) ------------------------

    def started(self, exchange: Exchange) -> None:
        if len(self._pending) + self.handed - self.written >= self.spec.queue_size:
            self.dropped += 1
            return
        self._pending.append((_START, exchange))

    def ended(self, exchange: Exchange) -> None:
        if len(self._pending) + self.handed - self.written >= self.spec.queue_size:
            self.dropped += 1
            return
        self._pending.append((_END, exchange))

    @property
    def queued(self) -> int:
        return len(self._pending) + self.handed - self.written

    def start(self) -> None:
        self.files = RecordFiles(self.spec)
        self._thread = threading.Thread(target=self._write_loop, name="warden-recorder",
                                        daemon=True)
        self._thread.start()

    async def run(self) -> None:
        """Hand what is pending to the writer every flush interval."""
        while True:
            await asyncio.sleep(self.spec.flush_interval)
            self.flush()

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.handed += len(batch)
            self._batches.put(batch)
        lost = self.dropped + self.refused + self.failed
        if lost != self._dropped_logged:
            log.warning("flight recorder: %d records dropped so far (queue full: %d, disk "
                        "cap: %d, write errors: %d)", lost, self.dropped, self.refused,
                        self.failed)
            self._dropped_logged = lost

    def reopen(self) -> None:
        """SIGHUP: an external logrotate moved the open file; the writer starts a new one."""
        self._batches.put(_REOPEN)

    async def stop(self) -> None:
        """Write everything pending, then stop the writer."""
        self.flush()
        self._batches.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # -- the writer thread ----------------------------------------------------------------

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
                self._write(files, batch)
            except Exception:
                log.exception("flight recorder: write failed")
                self.failed += len(batch)
            finally:
                self.written += len(batch)
        files.close()

    def _write(self, files: RecordFiles, batch: list[tuple[int, Exchange]]) -> None:
        offset = time.time() - time.monotonic()
        low_disk = files.free_disk() < self.spec.min_free_disk
        body_limit = 0 if low_disk else self.spec.max_file_size // 4
        # Written in pieces of at most a quarter file, so a piece always fits under the cap.
        piece_limit = self.spec.max_file_size // 4
        lines: list[bytes] = []
        size = 0
        for kind, exchange in batch:
            if kind == _START:
                record = start_record(exchange, offset, self._headers, body_limit)
                if low_disk and exchange.request is not None and exchange.request.body:
                    self.bodies_omitted += 1
            else:
                record = end_record(exchange, offset, self.spec.response)
            line = orjson.dumps(record) + b"\n"
            if lines and size + len(line) > piece_limit:
                self._write_piece(files, lines)
                lines, size = [], 0
            lines.append(line)
            size += len(line)
        if lines:
            self._write_piece(files, lines)

    def _write_piece(self, files: RecordFiles, lines: list[bytes]) -> None:
        if not files.write(b"".join(lines)):
            self.refused += len(lines)
