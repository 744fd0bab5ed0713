"""The recorder's files: one open JSON Lines file, rotated by size and by age, rotated files
compressed (zstd by default, or gzip: codecs.py), and the directory kept under a hard cap on
total bytes, a count and an age.

Runs on the writer thread only. Rules:
- The open file is always `warden.jsonl`, a fixed name, so an external logrotate can move it
  away and send SIGHUP (`reopen`). Rotated files are `warden-<UTC time>-<n>.jsonl[.zst|.gz]`.
- Every file in the directory whose name starts with `warden` and contains `.jsonl` counts
  against the cap (logrotate's copies too); the oldest (by modification time) go first.
- The cap holds before every write, compression included: room for the bytes about to be
  written is made first (deleting the oldest closed files), so the directory never holds more
  than `max_total_size` of them. A write that cannot fit even with every closed file gone is
  refused (`write` returns False) and the caller counts it as dropped.
- A restart rotates what the last run left open, so each file belongs to one run. (The
  gateway holds the directory's lock before this runs: record/lock.py.)

Faults (a full disk above all) never leave the files in a state that a later write cannot
recover from, and the accounting stays true:
- A write that fails is undone (the file is cut back to its last whole line) and raised: the
  caller counts its lines as dropped. The next write tries again, so writing resumes by
  itself once there is room.
- A rotation moves the open file aside and opens a new one whatever else fails. Compression
  that fails (no room for the copy) deletes its partial copy and leaves the rotated file as
  it is (readable, counted); `report` is told.
- No open file (it could not be opened, or someone deleted it: writing on would put records
  nowhere and free no space): the next write makes the directory and opens a new one.
- A `.tmp` (a compression cut short by a crash: its original is still there) is deleted.
- The closed files are counted again from the directory at each rotation, every minute, and
  every second in the minute after a write failed (an operator may have deleted some to make
  room), so `total_bytes` is what exists.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from warden.config.recorder_schema import RecorderSpec
from warden.record.codecs import SUFFIXES, open_compressed

OPEN_NAME = "warden.jsonl"
# A rotated file is compressed this much at a time, the CPU given up after each piece: the
# writer thread shares the event loop's core (the benchmarks pin the process to one), and a
# 1 MB piece was 2-3 ms of zstd in one run, which the loop waited out whenever the scheduler
# let the writer have the core (a whole file is ~0.2 s of CPU for 64 MB). 64 KB is ~0.2 ms.
_COPY_CHUNK = 64 * 1024
# How often the files are counted again from the directory: while writes fail, and else.
_RESCAN_FAILING = 1.0
_RESCAN_EVERY = 60.0


class Disk:
    """The calls that put record bytes on disk: the seam where tests make the disk full."""

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def open_compressed(self, path: Path, codec: str, level: int) -> IO[bytes]:
        return open_compressed(path, codec, level)


def _ignore(what: str, error: OSError) -> None:
    pass


class RecordFiles:
    def __init__(self, spec: RecorderSpec, clock: Callable[[], float] = time.time,
                 disk: Disk | None = None,
                 report: Callable[[str, OSError], None] = _ignore):
        """`report(what, error)`: a failure that lost nothing (a rotated file left
        uncompressed)."""
        self._spec = spec
        self._clock = clock
        self._disk = disk or Disk()
        self._report = report
        self.dir = Path(spec.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"recorder.dir {spec.dir}: {e.strerror}") from None
        self._open_path = self.dir / OPEN_NAME
        self._sequence = 0
        self._fd: int | None = None
        self._size = 0  # of the open file
        self._opened_at = clock()
        self._failed_at = float("-inf")  # when a write last failed
        self._scanned_at = 0.0
        # Closed files, oldest first: [path, bytes, modification time].
        self._closed: list[list] = []
        self._scan()
        left = self._open_path.stat().st_size if self._open_path.exists() else 0
        if left:   # the last run's open file: rotated, counted until then (its copy needs
            self._size = left   # room beside it), and the cap held at once, not at a write
            self._rotate(clock())
            self._make_room(0)
        else:
            self._open(clock())

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> bool:
        """Append whole lines and hand them to the OS. False: refused by the cap. OSError:
        not written (and nothing of it left in the file)."""
        now = self._clock()
        try:
            if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
                self._close_file()  # deleted under us (to free space?): its lines go nowhere
            if self._fd is None:
                self._recover(now)
            else:
                self._scan_if_due(now)
            if self._size and (self._size + len(data) > self._spec.max_file_size
                               or now - self._opened_at >= self._spec.rotate_interval):
                self._rotate(now)
            self._retire_old(now)
            if not self._make_room(len(data)):
                return False
            self._append(memoryview(data))
        except OSError:
            self._failed_at = now
            raise
        return True

    def refresh(self) -> None:
        """While idle: count the files again if due (see `_scan_if_due`)."""
        self._scan_if_due(self._clock())

    def reopen(self) -> None:
        """After an external rotation moved the open file away (SIGHUP): start a new one. The
        moved file is counted (and capped) from now on like our own."""
        self._close_file()
        self._scan()
        self._open(self._clock())

    def close(self) -> None:
        self._close_file()

    @property
    def total_bytes(self) -> int:
        return self._size + sum(entry[1] for entry in self._closed)

    def free_disk(self) -> int:
        return shutil.disk_usage(self.dir).free

    # -- internals -------------------------------------------------------------------------

    def _append(self, data: memoryview) -> None:
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):
                done += self._disk.write(self._fd, data[done:])
        except OSError:
            if done:
                self._cut_back()
            raise
        self._size += len(data)

    def _cut_back(self) -> None:
        """Take a partly written piece back out: the file ends with a whole line again."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:  # then reopen: the size is read again, the torn line stays
            self._close_file()

    def _open(self, now: float) -> None:
        fd = os.open(self._open_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o644)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._opened_at = now

    def _close_file(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _recover(self, now: float) -> None:
        """No open file (opening it failed): the directory may be gone too."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._open(now)

    def _scan_if_due(self, now: float) -> None:
        """Every second in the minute after a failed write, every minute else: an operator
        may have deleted files (to make room), and `total_bytes` must say what exists."""
        failing = now - self._failed_at < _RESCAN_EVERY
        if now - self._scanned_at >= (_RESCAN_FAILING if failing else _RESCAN_EVERY):
            self._scan()

    def _scan(self) -> None:
        """The closed files as the directory has them (the times already known are kept)."""
        known = {entry[0]: entry[2] for entry in self._closed}
        entries = []
        paths = list(self.dir.iterdir())
        names = {path.name for path in paths}
        for path in paths:
            name = path.name
            if not name.startswith("warden") or ".jsonl" not in name or name == OPEN_NAME:
                continue
            if name.endswith(".tmp") or (name.endswith(".jsonl") and any(
                    name + suffix in names for suffix in SUFFIXES.values())):
                # A compression cut short (the original is there), or one whose original a
                # crash left beside its finished copy: one file, counted and read once.
                path.unlink(missing_ok=True)
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append([path, stat.st_size, known.get(path, stat.st_mtime)])
        entries.sort(key=lambda entry: entry[2])
        self._closed = entries
        self._scanned_at = self._clock()

    def _rotate(self, now: float) -> None:
        self._close_file()
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        rotated = self.dir / f"warden-{stamp}-{self._sequence:06d}.jsonl"
        try:
            os.replace(self._open_path, rotated)
        except FileNotFoundError:  # moved or deleted by someone else: nothing to keep
            pass
        else:
            size = rotated.stat().st_size
            if self._spec.compress != "none" and size:
                rotated, size = self._compress(rotated, size)
            self._closed.append([rotated, size, now])
            self._scan()
        self._size = 0
        self._open(now)

    def _compress(self, path: Path, size: int) -> tuple[Path, int]:
        """Compress a rotated file. The copy needs room for at least as many bytes as the
        original (which is still counted, as the open file's size, until its copy is made);
        no room, or no space on the disk: it stays uncompressed."""
        # Either codec's worst case (incompressible input), and then some.
        if not self._make_room(size + size // 64 + 4096):
            return path, size
        codec = self._spec.compress
        target = path.with_name(path.name + SUFFIXES[codec])
        partial = target.with_name(target.name + ".tmp")
        try:
            with open(path, "rb") as src, self._disk.open_compressed(
                    partial, codec, self._spec.compress_level) as dst:
                while chunk := src.read(_COPY_CHUNK):
                    dst.write(chunk)
                    os.sched_yield()
            os.replace(partial, target)
        except OSError as e:
            partial.unlink(missing_ok=True)
            self._report(f"{path.name} left uncompressed", e)
            return path, size
        path.unlink()
        return target, target.stat().st_size

    def _make_room(self, incoming: int) -> bool:
        """Delete the oldest closed files until `incoming` more bytes fit under the cap and
        the count limit holds. False if they cannot fit even so."""
        cap = self._spec.max_total_size
        while self._closed and (self.total_bytes + incoming > cap
                                or len(self._closed) + 1 > self._spec.max_files):
            self._delete(self._closed[0])
        return self.total_bytes + incoming <= cap

    def _retire_old(self, now: float) -> None:
        while self._closed and now - self._closed[0][2] > self._spec.max_age:
            self._delete(self._closed[0])

    def _delete(self, entry: list) -> None:
        self._closed.remove(entry)
        entry[0].unlink(missing_ok=True)
