"""The recorder's buffer of record lines (warden/record/buffer.py): bounded chunks, whole
lines per piece, nothing lost or reordered, and a chunk never resized after it is sealed (a
sink on another thread may be reading it)."""

from __future__ import annotations

from warden.record.buffer import RecordBuffer


def line(n: int, size: int) -> bytes:
    return (b"%d:" % n).ljust(size - 1, b"x") + b"\n"


def test_lines_come_back_in_order_in_pieces_of_whole_lines():
    buffer = RecordBuffer(chunk_size=100)
    lines = [line(n, 10 + n % 37) for n in range(200)]
    for each in lines:
        buffer.add(each)
    assert buffer.count == 200
    pieces = buffer.take()
    assert b"".join(pieces) == b"".join(lines)
    assert len(pieces) > 1
    # (a chunk is sealed once it holds 100 bytes: at most 100 plus a line less one byte)
    assert all(piece and piece.endswith(b"\n") and len(piece) < 100 + 47 for piece in pieces)
    assert buffer.count == 0 and buffer.take() == []


def test_a_line_larger_than_a_chunk_is_a_piece_of_its_own_in_its_place():
    buffer = RecordBuffer(chunk_size=64)
    small, big = line(1, 20), line(2, 500)
    for each in (small, big, small, line(3, 64), small):
        buffer.add(each)
    pieces = buffer.take()
    assert pieces == [small, big, small, line(3, 64), small]
    assert pieces[1] is big  # not copied


def test_a_sealed_piece_is_never_changed_by_later_lines():
    buffer = RecordBuffer(chunk_size=50)
    buffer.add(line(1, 30))
    first = buffer.take()
    view = memoryview(first[0])  # a sink reading it: resizing it would raise BufferError
    for n in range(20):
        buffer.add(line(n, 30))
    assert bytes(view) == line(1, 30)
    assert b"".join(buffer.take()) == b"".join(line(n, 30) for n in range(20))


def test_a_chunk_is_sealed_once_it_holds_its_size():
    buffer = RecordBuffer(chunk_size=40)
    for n in range(4):
        buffer.add(line(n, 20))
    assert [len(piece) for piece in buffer.take()] == [40, 40]
