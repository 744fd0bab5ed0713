"""The command line's log: written by a thread of its own, so that a stderr nobody reads
(a full pipe) never blocks the logging call, which the gateway makes on its event loop;
bounded, with what was dropped said."""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading

from tests.harness import wait_until
from warden.observe.logs import QueueingHandler, WritingHandler


def test_a_blocked_stderr_never_blocks_the_logger_and_drops_are_said():
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, True)
    stream = os.fdopen(write_end, "w", buffering=1)
    lines: queue.Queue = queue.Queue(50)
    queueing = QueueingHandler(lines)
    writing = WritingHandler(queueing)
    writing.setStream(stream)
    listener = logging.handlers.QueueListener(lines, writing)
    listener.start()
    log = logging.getLogger("test.logs.blocked")
    log.propagate = False
    log.setLevel(logging.INFO)  # (whatever an earlier test left the root at)
    log.addHandler(queueing)
    try:
        # 70 KB of lines fill the pipe (64 KB): the writing thread blocks in write() ...
        def log_lines() -> None:
            for n in range(400):
                log.warning("line %d %s", n, "x" * 400)

        logging_thread = threading.Thread(target=log_lines, daemon=True)
        logging_thread.start()
        # ... and the logging calls did not wait for it: they all return while nobody reads
        # (a blocking handler would leave them stuck for good; the bound only ends the test).
        logging_thread.join(timeout=30)
        assert not logging_thread.is_alive()
        assert queueing.dropped > 0
        dropped = queueing.dropped
        # Reading the pipe unblocks the thread: what was queued comes out, with the count.
        out = bytearray()

        def drain() -> None:
            while chunk := os.read(read_end, 65536):
                out.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        log.warning("after")
        wait_until(lambda: b"after" in out, what="the last line written")
        text = out.decode()
        assert f"{dropped} log lines dropped: stderr was not being read" in text
        assert "WARNING test.logs.blocked: line 0 " in text
        assert text.count(" line ") == 400 - dropped
    finally:
        log.removeHandler(queueing)
        listener.stop()
        stream.close()
        os.close(read_end)
