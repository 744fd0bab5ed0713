"""The recorder's files: rotation, compression, retention, and a byte cap that holds after
every write (measured on disk, not by the code's own accounting). A fake clock drives time."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from warden.audit.reader import ReadStats, read_records, record_files
from warden.config.schema import RecorderSpec
from warden.record import files as files_module
from warden.record.codecs import zstd
from warden.record.files import OPEN_NAME, RecordFiles


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def spec(tmp_path: Path, **overrides) -> RecorderSpec:
    values = {"dir": str(tmp_path), "max_file_size": 4096, "max_total_size": 16384,
              "rotate_interval": 3600, "max_age": 86400, "max_files": 1000}
    return RecorderSpec(**{**values, **overrides})


def on_disk(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def line(n: int, size: int = 200) -> bytes:
    return b'{"id":"%d","type":"start","pad":"%s"}\n' % (n, b"x" * size)


@pytest.mark.parametrize(("codec", "suffix"), [("zstd", ".zst"), ("gzip", ".gz")])
def test_rotation_by_size_compresses_and_loses_nothing(tmp_path, codec, suffix):
    files = RecordFiles(spec(tmp_path, max_total_size=1 << 20, compress=codec))
    for n in range(100):
        assert files.write(line(n))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert OPEN_NAME in names and sum(name.endswith(".jsonl" + suffix) for name in names) >= 4
    assert all(p.stat().st_size <= 4096 for p in tmp_path.glob("*" + suffix))
    assert [r["id"] for r in read_records(record_files(tmp_path))] == \
        [str(n) for n in range(100)]


def test_zstd_is_the_default_and_a_bool_still_works():
    assert RecorderSpec().compress == "zstd"
    assert RecorderSpec(compress=True).compress == "zstd"
    assert RecorderSpec(compress=False).compress == "none"
    with pytest.raises(ValueError, match="gzip goes up to 9"):
        RecorderSpec(compress="gzip", compress_level=12)
    assert RecorderSpec(compress="zstd", compress_level=12).compress_level == 12


@pytest.mark.parametrize(("codec", "suffix", "decompress", "high"), [
    ("zstd", ".zst", zstd.decompress, 19), ("gzip", ".gz", gzip.decompress, 9)])
def test_rotated_files_are_compressed_at_the_configured_level(tmp_path, codec, suffix,
                                                               decompress, high):
    sizes = {}
    for level in (1, high):
        directory = tmp_path / str(level)
        directory.mkdir()
        files = RecordFiles(spec(directory, max_file_size=1 << 14, max_total_size=1 << 20,
                                 compress=codec, compress_level=level))
        for n in range(400):  # varied lines: the levels differ on them
            assert files.write(b'{"id":"%d","pad":"%s"}\n' % (n, str(n * n * 7919).encode() * 9))
        rotated = sorted(directory.glob("*" + suffix))[0]
        sizes[level] = rotated.stat().st_size
        assert decompress(rotated.read_bytes()).startswith(b'{"id":"0"')
    assert sizes[high] < sizes[1]


def test_a_torn_compressed_file_is_counted_not_fatal(tmp_path):
    files = RecordFiles(spec(tmp_path, max_total_size=1 << 20))
    for n in range(40):
        files.write(line(n))
    rotated = sorted(tmp_path.glob("*.zst"))
    torn = rotated[-1].read_bytes()
    rotated[-1].write_bytes(torn[:len(torn) // 2])
    stats = ReadStats()
    ids = [r["id"] for r in read_records(record_files(tmp_path), stats)]
    assert stats.unreadable_lines >= 1 and "0" in ids and len(ids) < 40


def test_the_cap_holds_after_every_write_and_the_oldest_go_first(tmp_path):
    files = RecordFiles(spec(tmp_path, compress=False))
    for n in range(2000):
        assert files.write(line(n, size=150 + n % 300))
        assert on_disk(tmp_path) <= 16384
    ids = [int(r["id"]) for r in read_records(record_files(tmp_path))]
    assert ids == list(range(ids[0], 2000)) and ids[0] > 1000  # a suffix: the newest kept


def test_the_cap_holds_while_compressing(tmp_path):
    files = RecordFiles(spec(tmp_path))
    for n in range(2000):
        files.write(line(n, size=150 + n % 300))
        assert on_disk(tmp_path) <= 16384


def test_a_write_that_cannot_fit_under_the_cap_is_refused(tmp_path):
    files = RecordFiles(spec(tmp_path))
    assert not files.write(b"x" * 20000 + b"\n")
    assert on_disk(tmp_path) == 0


def test_rotation_by_time_and_retention_by_age(tmp_path):
    clock = Clock()
    files = RecordFiles(spec(tmp_path, rotate_interval=60, max_age=300), clock)
    for n in range(10):
        files.write(line(n))
        clock.now += 61
    closed = sorted(tmp_path.glob("warden-*.jsonl.zst"))
    assert 4 <= len(closed) <= 6  # a file a minute, none older than 5 minutes
    with zstd.open(closed[-1]) as f:
        assert f.read() == line(8)


def test_retention_by_count(tmp_path):
    files = RecordFiles(spec(tmp_path, max_files=3, max_total_size=1 << 20))
    for n in range(200):
        files.write(line(n))
    assert len(list(tmp_path.iterdir())) == 3


def test_a_restart_rotates_the_file_the_last_run_left_open(tmp_path):
    RecordFiles(spec(tmp_path)).write(line(1))
    files = RecordFiles(spec(tmp_path))
    files.write(line(2))
    assert [r["id"] for r in read_records(record_files(tmp_path))] == ["1", "2"]
    assert (tmp_path / OPEN_NAME).read_bytes() == line(2)


def test_the_cap_holds_at_a_restart_before_any_write(tmp_path):
    """The last run's open file, rotated at the start, is counted against the cap (and the
    file count) at once: a gateway that records nothing after its restart is not over."""
    first = RecordFiles(spec(tmp_path, compress=False, max_total_size=32768))
    for n in range(400):
        first.write(line(n))
    assert on_disk(tmp_path) > 16384 and (tmp_path / OPEN_NAME).stat().st_size > 0
    RecordFiles(spec(tmp_path, compress=False, max_files=4))   # (16 KiB, 4 files)
    assert on_disk(tmp_path) <= 16384 and len(list(tmp_path.iterdir())) <= 4


def test_external_logrotate_then_sighup(tmp_path):
    files = RecordFiles(spec(tmp_path, compress=False))
    files.write(line(1))
    (tmp_path / OPEN_NAME).rename(tmp_path / "warden.jsonl.1")  # what logrotate does
    files.reopen()
    files.write(line(2))
    assert (tmp_path / OPEN_NAME).read_bytes() == line(2)
    assert [r["id"] for r in read_records(record_files(tmp_path))] == ["1", "2"]
    for n in range(3, 400):  # logrotate's copy counts against the cap, and goes first
        files.write(line(n))
        assert on_disk(tmp_path) <= 16384
    assert not (tmp_path / "warden.jsonl.1").exists()


def test_a_cap_too_small_for_four_files_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="max_total_size must hold at least four files"):
        spec(tmp_path, max_file_size=8192)


def test_a_rotated_file_is_compressed_in_pieces_with_the_core_given_up_between(
        tmp_path, monkeypatch):
    """The writer thread shares the event loop's core: compressing a whole file (megabytes)
    in one go held it for milliseconds; each piece is short and the thread yields after it."""
    yields = []
    monkeypatch.setattr(files_module.os, "sched_yield", lambda: yields.append(1))
    size = 1 << 20
    files = RecordFiles(spec(tmp_path, max_file_size=size, max_total_size=8 * size))
    lines = [line(n, 1000) for n in range(size // 1000 + 20)]  # past one rotation
    for each in lines:
        assert files.write(each)
    assert len(list(tmp_path.glob("*.zst"))) == 1  # one rotation, compressed
    assert len(yields) >= size // (64 * 1024)
    assert [r["id"] for r in read_records(record_files(tmp_path))] == \
        [str(n) for n in range(len(lines))]


def test_a_rotation_while_the_older_files_are_read_loses_nothing(tmp_path):
    """The reader lists the closed files again before it reads the open one: what was in
    the open file when it began is read from the rotated file, compressed or not."""
    files = RecordFiles(spec(tmp_path))
    for n in range(40):   # (a few closed files, and some in the open one)
        files.write(line(n))
    reading = read_records(record_files(tmp_path))
    first = next(reading)   # a closed file is being read
    for n in range(40, 60):   # meanwhile the open file fills, rotates and is compressed
        files.write(line(n))
    ids = [first["id"], *(r["id"] for r in reading)]
    assert ids == [str(n) for n in range(60)]
