"""Logging setup for the command line: one line per record, to stderr, written by a thread of
its own.

Why a thread: a log line is written where it is logged, and the gateway logs from its event
loop; stderr is often a pipe (systemd, a container runtime), and a pipe whose reader falls
behind blocks the writer, which stalled the whole loop for as long. Here the loop only queues
the record (formatted at once, so it says what was true then); the thread writes it.
Bounded: at most `QUEUED` lines wait; beyond, lines are dropped and counted, and the next line
written says how many (`N log lines dropped: stderr was not being read`). Everything queued
is written at exit.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUEUED = 10_000


class QueueingHandler(logging.handlers.QueueHandler):
    """Queues each record, formatted; drops (and counts) what does not fit."""

    def __init__(self, lines: queue.Queue):
        super().__init__(lines)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class WritingHandler(logging.StreamHandler):
    """The thread's side: writes each record, after a line for any dropped since the last."""

    def __init__(self, queueing: QueueingHandler):
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))
        self._queueing = queueing
        self._said = 0

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self._queueing.dropped
        if dropped != self._said:
            self.stream.write(f"{dropped - self._said} log lines dropped: stderr was not "
                              f"being read\n")
            self._said = dropped
        super().emit(record)


def configure(level: str = "INFO") -> logging.handlers.QueueListener | None:
    """As `logging.basicConfig`: nothing if the root logger has handlers already (a second
    call; a test's capture)."""
    if logging.getLogger().handlers:
        return None
    lines: queue.Queue = queue.Queue(QUEUED)
    queueing = QueueingHandler(lines)
    listener = logging.handlers.QueueListener(lines, WritingHandler(queueing))
    logging.basicConfig(level=level.upper(), handlers=[queueing])
    listener.start()
    atexit.register(listener.stop)
    return listener
