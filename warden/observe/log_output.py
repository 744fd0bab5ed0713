"""Where the gateway's log lines go while it serves: a bounded queue, drained by a writer
thread of its own that formats them and writes them to stderr.

Rule: logging never blocks the event loop. A record is queued in a handful of operations
(`put_nowait`); a stderr that a slow disk or a pipe nobody reads holds up blocks only the
writer thread, and once the queue is full further lines are dropped and counted
(`warden_log_dropped_total`, observe/log_metrics.py). Formatting is done by the writer too
(a record's arguments are formatted a moment after the call: loggers here pass immutable
ones). The writer is not a `logging.Handler` and writes with `os.write` on the descriptor,
not through `sys.stderr`: at exit, `logging.shutdown` and the interpreter flush what they
know, and a thread stuck in a write must hold none of their locks."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

# Records written in one system call, at most.
_BATCH = 256


class DroppingQueueHandler(logging.Handler):
    """Queues records for the writer; when the queue is full, drops and counts."""

    def __init__(self, lines: queue.Queue[logging.LogRecord | None]) -> None:
        super().__init__()
        self.lines = lines
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class LogOutput:
    """Installed on the root logger for a gateway's life (`install`, then `close`); the
    handlers it replaces are put back at `close`."""

    def __init__(self, log_format: logging.Formatter, queue_size: int, fd: int = 2) -> None:
        self.lines: queue.Queue[logging.LogRecord | None] = queue.Queue(queue_size)
        self.handler = DroppingQueueHandler(self.lines)
        self.format = log_format
        self.fd = fd
        self.write_failures = 0
        self._replaced: list[logging.Handler] = []
        self._writer = threading.Thread(target=self._write_lines, name="warden-log-writer",
                                        daemon=True)

    @property
    def dropped(self) -> int:
        return self.handler.dropped

    def install(self, level: str) -> None:
        root = logging.getLogger()
        self._replaced = list(root.handlers)
        for handler in self._replaced:
            root.removeHandler(handler)
        root.addHandler(self.handler)
        root.setLevel(level)
        self._writer.start()

    def close(self, timeout: float = 2.0) -> bool:
        """Write what is queued, within `timeout` seconds; then log as before. False: the
        writer is stuck (its descriptor blocks): what it had is lost, and this output stays
        installed (dropping), since logging straight to that descriptor would block."""
        deadline = time.monotonic() + timeout
        try:
            self.lines.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._writer.join(max(0.0, deadline - time.monotonic()))
        if self._writer.is_alive():
            return False
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for handler in self._replaced:
            root.addHandler(handler)
        return True

    def _write_lines(self) -> None:
        lines = self.lines
        while True:
            batch = [lines.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(lines.get_nowait())
                except queue.Empty:
                    break
            text = []
            for record in batch:
                if record is None:
                    self._write(text)
                    return
                try:
                    text.append(self.format.format(record) + "\n")
                except Exception:  # a record that cannot be formatted is skipped, not fatal
                    self.write_failures += 1
            self._write(text)

    def _write(self, text: list[str]) -> None:
        data = "".join(text).encode("utf-8", "replace")
        while data:
            try:
                written = os.write(self.fd, data)
            except InterruptedError:
                continue
            except OSError:  # stderr closed: nothing to be done but count
                self.write_failures += 1
                return
            data = data[written:]
