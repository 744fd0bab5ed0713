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
- A restart rotates what the last run left open, so each file belongs to one run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from warden.config.recorder_schema import RecorderSpec
from warden.record.codecs import SUFFIXES, open_compressed

OPEN_NAME = "warden.jsonl"
_COPY_CHUNK = 1 << 20


class RecordFiles:
    def __init__(self, spec: RecorderSpec, clock: Callable[[], float] = time.time):
        self._spec = spec
        self._clock = clock
        self.dir = Path(spec.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(e.errno, f"recorder.dir {spec.dir}: {e.strerror}") from None
        self._open_path = self.dir / OPEN_NAME
        self._sequence = 0
        # Closed files, oldest first: [path, bytes, modification time].
        self._closed: list[list] = []
        self._scan()
        if self._open_path.exists() and self._open_path.stat().st_size:
            self._open(clock())
            self._rotate(clock())
        self._open(clock())

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> bool:
        """Append whole lines and hand them to the OS. False: refused by the cap."""
        now = self._clock()
        if self._size and (self._size + len(data) > self._spec.max_file_size
                           or now - self._opened_at >= self._spec.rotate_interval):
            self._rotate(now)
        self._retire_old(now)
        if not self._make_room(len(data)):
            return False
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        return True

    def reopen(self) -> None:
        """After an external rotation moved the open file away (SIGHUP): start a new one. The
        moved file is counted (and capped) from now on like our own."""
        self._file.close()
        self._scan()
        self._open(self._clock())

    def close(self) -> None:
        self._file.close()

    @property
    def total_bytes(self) -> int:
        return self._size + sum(entry[1] for entry in self._closed)

    def free_disk(self) -> int:
        return shutil.disk_usage(self.dir).free

    # -- internals -------------------------------------------------------------------------

    def _open(self, now: float) -> None:
        self._file = open(self._open_path, "ab")  # noqa: SIM115 - held open across writes
        self._size = self._file.tell()
        self._opened_at = now

    def _scan(self) -> None:
        entries = []
        for path in self.dir.iterdir():
            if path.name.startswith("warden") and ".jsonl" in path.name \
                    and path.name != OPEN_NAME and not path.name.endswith(".tmp"):
                stat = path.stat()
                entries.append([path, stat.st_size, stat.st_mtime])
        entries.sort(key=lambda entry: entry[2])
        self._closed = entries

    def _rotate(self, now: float) -> None:
        self._file.close()
        self._sequence += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        rotated = self.dir / f"warden-{stamp}-{self._sequence:06d}.jsonl"
        os.replace(self._open_path, rotated)
        size = rotated.stat().st_size
        if self._spec.compress != "none" and size:
            rotated, size = self._compress(rotated, size)
        self._closed.append([rotated, size, now])
        self._open(now)

    def _compress(self, path: Path, size: int) -> tuple[Path, int]:
        """Compress a rotated file. The copy needs room for at least as many bytes as the
        original (which is still counted, as the open file's size, until its copy is made);
        no room: it stays uncompressed."""
        # Either codec's worst case (incompressible input), and then some.
        if not self._make_room(size + size // 64 + 4096):
            return path, size
        codec = self._spec.compress
        target = path.with_name(path.name + SUFFIXES[codec])
        partial = target.with_name(target.name + ".tmp")
        with open(path, "rb") as src, open_compressed(partial, codec,
                                                      self._spec.compress_level) as dst:
            while chunk := src.read(_COPY_CHUNK):
                dst.write(chunk)
        os.replace(partial, target)
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
