"""Image sizes from their headers, read by hand (no image library): PNG, JPEG, GIF, WebP and
BMP, the formats clients send. A parser reads through `read(offset, length)` (a
`media_bytes.Base64View`), a few bytes at a time, and answers:
- `ImageHeader(format, width, height)`: what the image claims to be;
- a problem (a str): the format's signature is there but its header is cut short or
  impossible (Pillow fails to open it, and vLLM answered such images with a 500);
- None: it cannot tell (another format, or bytes it cannot reach): the image is not judged.

Bounded work: at most `MAX_SEGMENTS` JPEG segments are walked, each a 4-byte read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Read = Callable[[int, int], "bytes | None"]

MAX_SEGMENTS = 256
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames).
_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF))
_STANDALONE = frozenset((0x01, *range(0xD0, 0xD8)))  # TEM, RST0-7: no length follows


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


Judged = ImageHeader | str | None


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 2], "big")


def _u32be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at:at + 4], "big")


def _le(data: bytes, at: int, size: int) -> int:
    return int.from_bytes(data[at:at + size], "little")


def image_header(read: Read) -> Judged:
    """What the image's header says (see the module's docstring)."""
    head = read(0, 32)
    if head is None:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(head)
    if head.startswith(b"\xff\xd8"):
        return _jpeg(read)
    if head.startswith((b"GIF87a", b"GIF89a")):
        return _gif(head)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp(head)
    if head.startswith(b"BM"):
        return _bmp(head)
    return None


def _sized(format_: str, width: int, height: int) -> Judged:
    if width <= 0 or height <= 0:
        return f"its {format_} header gives a size of {width}x{height}"
    return ImageHeader(format_, width, height)


def _png(head: bytes) -> Judged:
    if len(head) < 24:
        return "its PNG header is cut short"
    if head[12:16] != b"IHDR":
        return None  # (out of order: not judged, as Pillow may still find the size)
    return _sized("PNG", _u32be(head, 16), _u32be(head, 20))


def _gif(head: bytes) -> Judged:
    if len(head) < 10:
        return "its GIF header is cut short"
    width, height = _le(head, 6, 2), _le(head, 8, 2)
    if width == 0 or height == 0:
        return None  # (Pillow takes the first frame's size then: not judged)
    return ImageHeader("GIF", width, height)


def _webp(head: bytes) -> Judged:
    if len(head) < 30:
        return "its WebP header is cut short"
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if head[23:26] != b"\x9d\x01\x2a":
            return "its WebP (VP8) header is corrupt"
        return _sized("WebP", _le(head, 26, 2) & 0x3FFF, _le(head, 28, 2) & 0x3FFF)
    if chunk == b"VP8L":  # lossless: a signature byte, then sizes minus one, 14 bits each
        if head[20] != 0x2F:
            return "its WebP (VP8L) header is corrupt"
        bits = _le(head, 21, 4)
        return _sized("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: the canvas size minus one, 24 bits each
        return _sized("WebP", _le(head, 24, 3) + 1, _le(head, 27, 3) + 1)
    return None


def _bmp(head: bytes) -> Judged:
    if len(head) < 26:
        return "its BMP header is cut short"
    if _le(head, 14, 4) == 12:  # OS/2 1.x: 16-bit sizes
        return _sized("BMP", _le(head, 18, 2), _le(head, 20, 2))
    width = int.from_bytes(head[18:22], "little", signed=True)
    height = int.from_bytes(head[22:26], "little", signed=True)
    return _sized("BMP", width, abs(height))  # (a negative height: rows top-down)


def _jpeg(read: Read) -> Judged:
    """Walk the segments from SOI to the first start-of-frame, which holds the size."""
    at = 2
    for _ in range(MAX_SEGMENTS):
        marker = read(at, 4)
        if marker is None:
            return None
        if len(marker) < 2:
            return "its JPEG data ends before the image's size (no frame header)"
        if marker[0] != 0xFF:
            return None  # (Pillow skips stray bytes between segments: not judged)
        code = marker[1]
        if code == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if code in _STANDALONE:
            at += 2
            continue
        if code == 0xD9:
            return "its JPEG data ends (EOI) before any frame header"
        if code == 0xDA:
            return "its JPEG scan starts before any frame header"
        if len(marker) < 4:
            return "its JPEG data ends inside a segment's header"
        length = _u16be(marker, 2)
        if length < 2:
            return f"its JPEG segment FF{code:02X} has an impossible length"
        if code in _SOF:
            frame = read(at + 4, 5)
            if frame is None:
                return None
            if len(frame) < 5:
                return "its JPEG frame header is cut short"
            height, width = _u16be(frame, 1), _u16be(frame, 3)
            if height == 0:
                return None  # (the height may come later, in a DNL segment: not judged)
            return _sized("JPEG", width, height)
        at += 2 + length
    return None
