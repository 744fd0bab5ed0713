"""The recorder's writer side: a flush's buffer reaches the files in pieces of whole lines, each
at most a quarter file (so a piece always fits under the cap) and a slice (so it holds the
core briefly), and what the cap refuses is counted line by line."""

from __future__ import annotations

import os
import threading

from tests.harness import wait_until
from warden.config.schema import RecorderSpec
from warden.record import writer as writer_module
from warden.record.writer import NICE, SLICE, Writer

FILE_SIZE = 4096
LIMIT = FILE_SIZE // 4


class Files:
    """RecordFiles' `write`, seen from the recorder: takes pieces, refuses the ones asked."""

    def __init__(self, refuse: set[int] = frozenset()):
        self.pieces: list[bytes] = []
        self._refuse = refuse

    def write(self, data) -> bool:
        self.pieces.append(bytes(data))
        return len(self.pieces) - 1 not in self._refuse


def lines(*sizes: int) -> bytearray:
    """One line per size, each `size` bytes with its newline."""
    return bytearray(b"".join(b"%d" % (n % 10) * (size - 1) + b"\n"
                              for n, size in enumerate(sizes)))


def recorder() -> Writer:
    return Writer(RecorderSpec(max_file_size=FILE_SIZE, max_total_size=4 * FILE_SIZE))


def test_a_batch_is_written_in_whole_lines_of_at_most_a_quarter_file():
    batch = lines(*[100] * 25, 300, 300, 300, 50)
    files = Files()
    recorder().write(files, [batch])
    assert b"".join(files.pieces) == batch
    assert len(files.pieces) > 1
    assert all(len(piece) <= LIMIT and piece.endswith(b"\n") for piece in files.pieces)
    # Greedy: no piece could have taken the next line too.
    for piece, following in zip(files.pieces, files.pieces[1:], strict=False):
        assert len(piece) + following.index(b"\n") + 1 > LIMIT


def test_a_line_longer_than_the_limit_is_a_piece_of_its_own():
    batch = lines(10, LIMIT * 2, 10, LIMIT + 1)
    files = Files()
    recorder().write(files, [batch])
    assert files.pieces == [bytes(batch[:10]), bytes(batch[10:10 + 2 * LIMIT]),
                            bytes(batch[10 + 2 * LIMIT:20 + 2 * LIMIT]),
                            bytes(batch[20 + 2 * LIMIT:])]


def test_lines_the_cap_refuses_are_counted():
    batch = lines(*[400] * 6)  # two lines a piece
    files = Files(refuse={1})
    writer = recorder()
    writer.write(files, [batch])
    assert len(files.pieces) == 3 and writer.refused == 2


def test_a_big_batch_goes_in_slices_with_the_core_given_up_between(monkeypatch):
    """A flush's records under load are megabytes: each write holds the loop's core (and
    the GIL around it) for at most a slice's worth, and the thread yields after each."""
    yields = []
    monkeypatch.setattr(writer_module.os, "sched_yield", lambda: yields.append(1))
    batch = lines(*[300 + n % 700 for n in range(8000)])  # ~5 MB
    files = Files()
    Writer(RecorderSpec()).write(files, [batch])
    assert b"".join(files.pieces) == batch
    assert all(len(piece) <= SLICE and piece.endswith(b"\n") for piece in files.pieces)
    assert len(files.pieces) >= len(batch) // SLICE
    assert len(yields) == len(files.pieces) - 1


def test_the_writer_thread_runs_below_the_loop_s_priority(tmp_path):
    writer = Writer(RecorderSpec(dir=str(tmp_path)))
    writer.start()
    try:
        thread = writer._thread
        assert thread is not None and thread.native_id is not None
        wait_until(lambda: os.getpriority(os.PRIO_PROCESS, thread.native_id) == NICE,
                   what="the writer thread's nice value")
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < NICE
    finally:
        writer.batches.put(None)
        writer.join()


class Breaking(Files):
    """A write that fails with something other than the disk (a bug, a codec's error)."""

    def write(self, data) -> bool:
        if not self.pieces:
            self.pieces.append(b"")
            raise RuntimeError("a codec failed")
        return super().write(data)


def test_a_slice_that_fails_unexpectedly_is_counted_and_the_rest_still_written():
    batch = lines(*[400] * 6)  # two lines a piece: three pieces
    files = Breaking()
    writer = recorder()
    writer.write(files, [batch, lines(100)])
    assert writer.failed == 2   # the first piece's lines, counted
    assert b"".join(files.pieces) == bytes(batch[800:]) + bytes(lines(100))
