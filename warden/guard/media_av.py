"""Video and audio durations from their container headers, where one says it cheaply:
ISO base media (MP4, MOV, M4A: the movie header `mvhd`), WAV (the data chunk's size over the
byte rate) and FLAC (STREAMINFO's samples over its rate). Anything else is not judged.

A parser reads through `read(offset, length)` (a `media_bytes.Base64View`) and returns the
duration in seconds, or None when the header does not say (another container, a streamed
WAV, a fragmented MP4 whose movie header gives 0, bytes it cannot reach). It never raises
and walks at most `MAX_BOXES` boxes or chunks, one small read each.
"""

from __future__ import annotations

from collections.abc import Callable

Read = Callable[[int, int], "bytes | None"]

MAX_BOXES = 64
_ISO_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


def duration_seconds(read: Read, size: int) -> float | None:
    """The duration its header gives; `size` is the item's decoded size."""
    head = read(0, 12)
    if head is None or len(head) < 12:
        return None
    if head[4:8] in _ISO_FIRST_BOXES:
        return _iso(read, size)
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return _wav(read, size)
    if head.startswith(b"fLaC"):
        return _flac(read)
    return None


def _box(read: Read, at: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, where its content starts, where it ends) of the box at `at`."""
    header = read(at, 16)
    if header is None or len(header) < 8:
        return None
    size = int.from_bytes(header[:4], "big")
    kind = header[4:8]
    content = at + 8
    if size == 1:  # a 64-bit size follows the type
        if len(header) < 16:
            return None
        size = int.from_bytes(header[8:16], "big")
        content = at + 16
    elif size == 0:  # to the end of the enclosing box (or file)
        size = end - at
    if size < content - at:
        return None
    return kind, content, at + size


def _find(read: Read, kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    at = start
    for _ in range(MAX_BOXES):
        if at >= end:
            return None
        box = _box(read, at, end)
        if box is None:
            return None
        found, content, stop = box
        if found == kind:
            return content, stop
        at = stop
    return None


def _iso(read: Read, size: int) -> float | None:
    movie = _find(read, b"moov", 0, size)
    if movie is None:
        return None
    header = _find(read, b"mvhd", movie[0], movie[1])
    if header is None:
        return None
    data = read(header[0], 32)
    if data is None or len(data) < 20:
        return None
    if data[0] == 1:  # version 1: 64-bit times
        if len(data) < 32:
            return None
        timescale = int.from_bytes(data[20:24], "big")
        duration = int.from_bytes(data[24:32], "big")
        unknown = duration == 2**64 - 1
    else:
        timescale = int.from_bytes(data[12:16], "big")
        duration = int.from_bytes(data[16:20], "big")
        unknown = duration == 2**32 - 1
    if timescale == 0 or duration == 0 or unknown:
        return None
    return duration / timescale


def _wav(read: Read, size: int) -> float | None:
    at = 12
    byte_rate = 0
    for _ in range(MAX_BOXES):
        header = read(at, 8)
        if header is None or len(header) < 8:
            return None
        kind, length = header[:4], int.from_bytes(header[4:8], "little")
        if kind == b"fmt ":
            fmt = read(at + 8, 16)
            if fmt is None or len(fmt) < 16:
                return None
            byte_rate = int.from_bytes(fmt[8:12], "little")
        elif kind == b"data":
            if byte_rate == 0:
                return None
            if length in (0, 2**32 - 1):  # streamed: the data runs to the end
                length = max(0, size - at - 8)
            return length / byte_rate
        at += 8 + length + (length & 1)  # chunks are padded to an even size
    return None


def _flac(read: Read) -> float | None:
    block = read(4, 22)
    if block is None or len(block) < 22 or block[0] & 0x7F != 0:  # STREAMINFO comes first
        return None
    packed = int.from_bytes(block[14:22], "big")  # rate:20 channels:3 bits:5 samples:36
    rate = packed >> 44
    samples = packed & (2**36 - 1)
    if rate == 0 or samples == 0:
        return None
    return samples / rate
