"""The recorder's writer thread: the batches the event loop hands over, written to the files
(`RecordFiles`: rotation, compression, the cap), and nothing else; `FileSink` is its face to
the recorder (a `Sink`: sink.py). It runs per batch, not per request, so it stays interpreted
(the recorder's loop side is compiled).

Faults: a piece that cannot be written (a full disk above all) is dropped and counted by
cause (`disk_full`: ENOSPC or EDQUOT; `write_error`: any other), and the next piece is tried
all the same, so writing resumes by itself as soon as it can. The log says so once, without a
traceback (`cannot write ...`), then at most once a minute how many records were dropped
since, and once when writing resumes; the loop's own summary of every loss is throttled the
same way (recorder.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from warden.config.recorder_schema import RecorderSpec
from warden.record.files import Disk, RecordFiles
from warden.record.sink import Batch
from warden.record.trouble import Trouble

log = logging.getLogger("warden.record")

REOPEN = "reopen"
# With no batch for this long, the writer looks at the disk anyway (its free space, the files
# an operator deleted).
IDLE_CHECK = 1.0
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# The most bytes written in one piece. The thread shares the event loop's core (and its GIL):
# a batch written whole (a flush's records: megabytes under load) held that core for
# milliseconds at a time, and the loop's requests waited (bench.loop_stalls). Each piece is a
# short write, after which the thread gives the CPU up (`sched_yield`): a runnable loop runs
# next. (At 256 KB a piece costs ~0.1 ms of the kernel's copying.)
SLICE = 256 * 1024
# The thread's nice value, above the loop's: when both want the core, the loop gets ~90% of
# it and the writer ~10% (CFS weights 1024 against 110), which is still several times what
# the writer needs at the loop's full speed (~1.3 µs a request, against the loop's ~25), so
# the queue does not grow; an idle loop leaves it the whole core.
NICE = 10
_DISK_FULL_HINT = {errno: " (a recorder.max_total_size that the disk can hold keeps the "
                          "newest records instead)" for errno in _DISK_FULL}


class Writer:
    """Owns the files and the thread; counters are written by its thread only."""

    def __init__(self, spec: RecorderSpec, clock: Callable[[], float] = time.monotonic,
                 disk: Disk | None = None):
        self.spec = spec
        self.batches: queue.SimpleQueue[Batch | str | None] = queue.SimpleQueue()
        self.files: RecordFiles | None = None
        self.written = 0      # records the writer is done with (written or dropped)
        self.written_bytes = 0  # ... and their bytes
        self.refused = 0      # dropped: the disk cap refused them
        self.disk_full = 0    # dropped: no space on the disk (or over quota)
        self.failed = 0       # dropped: any other write error
        # The largest body written verbatim; 0 while free disk is below the floor.
        self.body_limit = spec.max_file_size // 4
        self._disk = disk
        self._trouble = Trouble(log, f"flight recorder: {spec.dir}", clock, _DISK_FULL_HINT)
        self._thread: threading.Thread | None = None
        # Told of each batch written (`note(cause, started, active)`: time.perf_counter(), the
        # seconds this thread ran or was runnable; from this thread): the event loop's probe,
        # which blames a stall on this thread when it held the GIL or the core then
        # (observe.loop_probe).
        self.note: Callable[[str, float, float], None] | None = None

    def start(self) -> None:
        """Open the files (here, so that an unwritable directory stops the start), then
        start the thread."""
        self.files = RecordFiles(self.spec, disk=self._disk, report=self._trouble.noted)
        self._thread = threading.Thread(target=self.run, name="warden-recorder", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def run(self) -> None:
        files = self.files
        assert files is not None
        _lower_priority()
        while True:
            try:
                batch = self.batches.get(timeout=IDLE_CHECK)
            except queue.Empty:  # no records for a while: the disk's state still counts
                self._refresh(files)
                continue
            if batch is None:
                break
            began, active = time.perf_counter(), _active_seconds()
            if isinstance(batch, str):  # REOPEN
                try:
                    files.reopen()
                except OSError as e:  # the next write opens it
                    self._trouble.noted("reopen failed", e)
                continue
            try:
                self.write(files, batch.pieces)
                self._check_free_disk(files)
            finally:
                self.written_bytes += batch.size
                self.written += batch.count
                if self.note is not None:
                    self.note("recorder_writer", began, _active_seconds() - active)
        files.close()

    def write(self, files: RecordFiles, pieces: list[bytes]) -> None:
        """Each piece (whole lines: buffer.py) in slices of whole lines of at most a quarter
        file (so that a slice always fits under the cap) and at most `SLICE` bytes each (so
        that it holds the core briefly; a single longer line is a slice of its own), giving
        the CPU up after each. A slice that fails is dropped and the next is tried; the batch
        as a whole says whether writing works."""
        limit = min(self.spec.max_file_size // 4, SLICE)
        failure: OSError | None = None
        dropped = 0
        for number, lines in enumerate(pieces):
            if number:
                os.sched_yield()
            view = memoryview(lines)
            start = 0
            while start < len(lines):
                end = lines.rfind(b"\n", start, start + limit) + 1
                if end <= start:  # one line longer than the limit
                    end = lines.find(b"\n", start + limit) + 1 or len(lines)
                count = lines.count(b"\n", start, end)
                try:
                    if not files.write(view[start:end]):
                        self.refused += count
                except OSError as e:
                    failure = failure or e
                    dropped += count
                    if e.errno in _DISK_FULL:
                        self.disk_full += count
                    else:
                        self.failed += count
                except Exception:  # a bug: its traceback (once a minute at most); the slices
                    self.failed += count   # after it are still tried, each counted
                    self._trouble.failing(None, count)
                start = end
                if start < len(lines):
                    os.sched_yield()
        if failure is not None:
            self._trouble.failing(failure, dropped)
        else:
            self._trouble.working()

    def _refresh(self, files: RecordFiles) -> None:
        try:
            files.refresh()
        except OSError:  # the directory is gone: the next write makes it again
            return
        self._check_free_disk(files)

    def _check_free_disk(self, files: RecordFiles) -> None:
        try:
            low_disk = files.free_disk() < self.spec.min_free_disk
        except OSError:  # the directory is gone: the next write makes it again
            return
        self.body_limit = 0 if low_disk else self.spec.max_file_size // 4


def _active_seconds() -> float:
    """This thread's seconds on the CPU or runnable (waiting for it, the GIL perhaps held)
    so far (Linux's schedstat; else its CPU time)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as stat:
            cpu, queued = stat.read().split()[:2]
        return (int(cpu) + int(queued)) * 1e-9
    except (OSError, ValueError):
        return time.thread_time()


def _lower_priority() -> None:
    """This thread (only) at `NICE` (Linux: a thread's nice value is its own)."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: it
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # runs at the loop's


class FileSink:
    """The files as a `Sink` (sink.py): the record of reference. The recorder bounds its own
    queue by their backlog (`recorder.queue_size`, `.queue_bytes`: it drops a record before
    rendering it, and counts it), so `submit` here never has to drop; their losses are the
    recorder's."""

    name = "files"

    def __init__(self, spec: RecorderSpec, writer: Writer | None = None):
        self.writer = writer if writer is not None else Writer(spec)

    @property
    def done(self) -> int:
        return self.writer.written

    @property
    def done_bytes(self) -> int:
        return self.writer.written_bytes

    @property
    def lost(self) -> int:
        writer = self.writer
        return writer.refused + writer.disk_full + writer.failed

    @property
    def files(self) -> RecordFiles | None:
        return self.writer.files

    @property
    def body_limit(self) -> int:
        return self.writer.body_limit

    def open(self) -> None:
        self.writer.start()

    def submit(self, batch: Batch) -> None:
        self.writer.batches.put(batch)

    def reopen(self) -> None:
        """SIGHUP: an external logrotate moved the open file; the writer starts a new one."""
        self.writer.batches.put(REOPEN)

    async def close(self) -> None:
        """Everything queued is written (no deadline but the disk's), then the thread ends."""
        self.writer.batches.put(None)
        await asyncio.to_thread(self.writer.join)
