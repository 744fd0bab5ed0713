"""The recorder's files and writer on a disk that fills up: a failed write leaves whole lines,
a rotation cut short by the disk still leaves an open file (so writing resumes by itself when
space returns), no temporary file stays behind, the bytes counted are the bytes that exist,
what is dropped is counted by cause, and the log says it once, then with backoff.

The disk is made full at the seam `Disk` (what writes record bytes); tests/integration/
test_recorder_disk_full.py does the same on a real full filesystem."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from warden.audit.reader import ReadStats, read_records, record_files
from warden.backoff import SUMMARY_EVERY
from warden.config.schema import RecorderSpec
from warden.record.files import OPEN_NAME, Disk, RecordFiles
from warden.record.recorder import Recorder
from warden.record.writer import Writer


class FullDisk(Disk):
    """A disk with `room` bytes left (None: unlimited). A write past it writes what fits and
    then fails with ENOSPC, as a real one does; so does a compressed copy."""

    def __init__(self) -> None:
        self.room: int | None = None

    def write(self, fd: int, data: memoryview) -> int:
        if self.room is None:
            return os.write(fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, data[:self.room])
        self.room -= written
        return written

    def open_compressed(self, path: Path, codec: str, level: int):
        return _Compressed(super().open_compressed(path, codec, level), self)


class _Compressed:
    def __init__(self, inner, disk: FullDisk) -> None:
        self._inner, self._disk = inner, disk

    def write(self, data: bytes) -> int:
        if self._disk.room is not None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._inner.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._inner.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(tmp_path: Path, **overrides) -> RecorderSpec:
    values = {"dir": str(tmp_path), "max_file_size": 4096, "max_total_size": 1 << 20,
              "min_free_disk": 0}
    return RecorderSpec(**{**values, **overrides})


def line(n: int) -> bytes:
    return b'{"id":"%d","type":"start","pad":"%s"}\n' % (n, b"x" * 200)


def on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def ids(directory: Path, stats: ReadStats | None = None) -> list[int]:
    return [int(r["id"]) for r in read_records(record_files(directory), stats)]


def test_a_full_disk_during_rotation_then_space_returns(tmp_path):
    disk = FullDisk()
    files = RecordFiles(spec(tmp_path), disk=disk)
    n = 0
    while files.total_bytes + len(line(n)) <= 4096:  # the open file, all but full
        assert files.write(line(n))
        n += 1
    disk.room = 0
    with pytest.raises(OSError) as full:  # the rotation's compression, then the write fail
        files.write(line(n))
    assert full.value.errno == errno.ENOSPC
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not [name for name in names if name.endswith(".tmp")]
    assert OPEN_NAME in names and any(name.endswith(".jsonl") and name != OPEN_NAME
                                      for name in names)  # rotated, left uncompressed
    assert files.total_bytes == on_disk(tmp_path)
    with pytest.raises(OSError):
        files.write(line(n + 1))
    disk.room = None  # space is back: writing resumes, no restart
    for m in range(n + 2, n + 40):
        assert files.write(line(m))
    stats = ReadStats()
    assert ids(tmp_path, stats) == [*range(n), *range(n + 2, n + 40)]
    assert stats.unreadable_lines == 0
    assert files.total_bytes == on_disk(tmp_path)


def test_a_write_cut_short_by_the_disk_leaves_whole_lines(tmp_path):
    disk = FullDisk()
    files = RecordFiles(spec(tmp_path), disk=disk)
    assert files.write(line(1))
    disk.room = 100  # a third of the next line fits
    with pytest.raises(OSError):
        files.write(line(2))
    assert (tmp_path / OPEN_NAME).read_bytes() == line(1)
    disk.room = None
    assert files.write(line(3))
    assert (tmp_path / OPEN_NAME).read_bytes() == line(1) + line(3)
    assert files.total_bytes == on_disk(tmp_path)


def test_the_bytes_counted_are_the_bytes_that_exist(tmp_path):
    """An operator deletes files to make room while writes fail: the count follows (within
    a second), and the open file deleted under the writer is replaced, not written into the
    void."""
    clock, disk = Clock(), FullDisk()
    files = RecordFiles(spec(tmp_path, compress="none"), clock, disk)
    for n in range(60):
        files.write(line(n))
    disk.room = 0
    with pytest.raises(OSError):
        files.write(line(60))
    for path in tmp_path.iterdir():
        path.unlink()
    disk.room = None
    clock.now += 1
    assert files.write(line(61))
    assert files.total_bytes == on_disk(tmp_path) == len(line(61))
    assert (tmp_path / OPEN_NAME).read_bytes() == line(61)


def test_a_compression_cut_short_by_a_crash_is_removed_at_start(tmp_path):
    RecordFiles(spec(tmp_path)).write(line(1))
    leftover = tmp_path / "warden-20260101T000000-000001.jsonl.zst.tmp"
    leftover.write_bytes(b"partial")
    files = RecordFiles(spec(tmp_path))
    assert not leftover.exists()
    assert files.total_bytes == on_disk(tmp_path)
    assert ids(tmp_path) == [1]


def test_an_original_a_crash_left_beside_its_finished_copy_is_removed_at_start(tmp_path):
    """Killed between the copy's rename and the original's removal: one file, counted and
    read once (else its requests would be replayed twice)."""
    files = RecordFiles(spec(tmp_path))
    files.write(line(1))
    files.close()
    RecordFiles(spec(tmp_path)).close()   # (rotated and compressed at the start)
    [copy] = tmp_path.glob("warden-*.jsonl.zst")
    original = copy.with_name(copy.name.removesuffix(".zst"))
    original.write_bytes(line(1))   # what the crash left
    files = RecordFiles(spec(tmp_path))
    assert not original.exists()
    assert files.total_bytes == on_disk(tmp_path)
    assert ids(tmp_path) == [1]


def batch(*numbers: int) -> list[bytes | bytearray]:
    """A batch's pieces (record/buffer.py): here, all its lines in one."""
    return [bytearray(b"".join(line(n) for n in numbers))]


def test_the_writer_counts_by_cause_and_says_it_with_backoff(tmp_path, caplog):
    clock, disk = Clock(), FullDisk()
    writer = Writer(spec(tmp_path), clock, disk)
    writer.files = RecordFiles(writer.spec, disk=disk)
    caplog.set_level(logging.WARNING, "warden.record")
    writer.write(writer.files, batch(0, 1))
    disk.room = 0
    for second in range(10):  # ten batches a second would be a hundred log lines
        clock.now += 1
        writer.write(writer.files, batch(*range(10 * second, 10 * second + 10)))
    assert writer.disk_full == 100 and writer.failed == 0
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is None
    assert "cannot write (No space left on device)" in caplog.messages[0]
    clock.now += SUMMARY_EVERY
    writer.write(writer.files, batch(1000, 1001))
    assert len(caplog.records) == 2
    # (since the first line, which told of the first batch)
    assert "still cannot write (No space left on device): 92 records dropped" \
        in caplog.messages[1]
    disk.room = None
    writer.write(writer.files, batch(2000))
    assert len(caplog.records) == 3
    assert "writing again after 69.0 s; 102 records were dropped meanwhile" \
        in caplog.messages[2]
    assert ids(tmp_path) == [0, 1, 2000]


def test_the_loss_summary_comes_at_once_then_once_a_minute(caplog):
    recorder = Recorder(RecorderSpec(queue_size=1))
    caplog.set_level(logging.WARNING, "warden.record")
    recorder.report_losses(0.0)
    assert caplog.messages == []  # nothing lost
    recorder.dropped = 3
    recorder.report_losses(1.0)
    recorder.file_sink.writer.disk_full = 40
    for now in range(2, 60):
        recorder.report_losses(float(now))
    assert len(caplog.messages) == 1 and "3 records lost since the last report" \
        in caplog.messages[0]
    recorder.report_losses(61.0)
    assert len(caplog.messages) == 2
    assert "40 records lost since the last report, 43 in all (queue full: 3, disk full: " \
        "40" in caplog.messages[1]
