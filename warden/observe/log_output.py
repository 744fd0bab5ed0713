"""Where the gateway's log lines go while it serves: a bounded queue, drained by a writer
thread of its own that formats them and writes them to stderr.

Rule: logging never blocks the event loop. A record is queued in a handful of operations
(a deque's append); a stderr that a slow disk or a pipe nobody reads holds up blocks only the
writer thread, and once the queue is full further lines are dropped and counted
(`warden_log_dropped_total`, observe/log_metrics.py). Formatting is done by the writer too
(a record's arguments are formatted a moment after the call: loggers here pass immutable
ones). The writer is not a `logging.Handler` and writes with `os.write` on the descriptor,
not through `sys.stderr`: at exit, `logging.shutdown` and the interpreter flush what they
know, and a thread stuck in a write must hold none of their locks."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque

# Records written in one system call, at most; how often the writer looks for lines.
_BATCH = 256
_INTERVAL = 0.05


class DroppingQueueHandler(logging.Handler):
    """Queues records for the writer (an append: no lock shared with the writer, no wake-up,
    no system call); when `limit` are waiting, drops and counts."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.lines: deque[logging.LogRecord] = deque()
        self.limit = limit
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) >= self.limit:
            self.dropped += 1
        else:
            self.lines.append(record)


class LogOutput:
    """Installed on the root logger for a gateway's life (`install`, then `close`); the
    handlers it replaces are put back at `close`. The writer looks for lines every 50 ms
    (a line waits that long at most), not at each line: a wake-up per line would cost the
    loop a system call and the GIL's hand-over."""

    def __init__(self, log_format: logging.Formatter, queue_size: int, fd: int = 2,
                 interval: float = _INTERVAL) -> None:
        """`interval`: how often the writer looks for lines (a benchmark that counts
        instructions sets it beyond its run, and calls `write_queued` itself)."""
        self.handler = DroppingQueueHandler(queue_size)
        self.interval = interval
        self.lines = self.handler.lines
        self.format = log_format
        self.fd = fd
        self.write_failures = 0
        self._replaced: list[logging.Handler] = []
        self._stop = threading.Event()
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
        self._stop.set()
        self._writer.join(timeout)
        if self._writer.is_alive():
            return False
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for handler in self._replaced:
            root.addHandler(handler)
        return True

    def _write_lines(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            self.write_queued()
            if stopping:
                return

    def write_queued(self) -> None:
        """Format and write every line queued (the writer's work; one thread at a time)."""
        lines = self.lines
        while lines:
            text = []
            while lines and len(text) < _BATCH:
                record = lines.popleft()
                try:
                    text.append(self.format.format(record) + "\n")
                except Exception:  # a record that cannot be formatted is skipped
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
