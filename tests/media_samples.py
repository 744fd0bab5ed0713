"""Tiny media files made with the standard library, for the media rules' tests (no binary
blobs in the repository): whole PNGs, and the headers of the other formats."""

from __future__ import annotations

import base64
import struct
import zlib


def png(width: int, height: int, header_only: bool = False) -> bytes:
    """A valid RGB PNG of zeros (or only its signature and IHDR)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                                             2, 0, 0, 0))
    if header_only:
        return head
    compressor = zlib.compressobj()
    row = b"\x00" * (1 + width * 3)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return head + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def jpeg(width: int, height: int, exif: int = 0, progressive: bool = False) -> bytes:
    """A baseline (or progressive) JPEG's segments up to its first scan, with an APP1 of
    `exif` bytes before the frame header (cameras put tens of KB there)."""
    out = [b"\xff\xd8", b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"]
    while exif > 0:
        size = min(exif, 65533)
        out.append(b"\xff\xe1" + struct.pack(">H", size + 2) + b"E" * size)
        exif -= size
    out.append(b"\xff\xdb\x00\x43\x00" + bytes(range(1, 65)))
    sof = b"\xff\xc2" if progressive else b"\xff\xc0"
    out.append(sof + b"\x00\x11\x08" + struct.pack(">HH", height, width)
               + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    out.append(b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00" + b"\x00" * 32)
    return b"".join(out) + b"\xff\xd9"


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x3b"


def webp(width: int, height: int, kind: str) -> bytes:
    if kind == "VP8X":
        payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + \
            (height - 1).to_bytes(3, "little")
    elif kind == "VP8L":
        bits = (width - 1) | (height - 1) << 14
        payload = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 5
    else:
        payload = b"\x00\x00\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 4
    chunk = kind.encode() + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def bmp(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, 54) + dib


def mp4(seconds: float, timescale: int = 1000, moov_last: bool = False,
        version: int = 0) -> bytes:
    """An MP4's boxes: ftyp, a movie header giving the duration, and an empty mdat."""
    def box(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", 8 + len(data)) + kind + data

    duration = round(seconds * timescale)
    if version == 1:
        mvhd = b"\x01\x00\x00\x00" + struct.pack(">QQIQ", 0, 0, timescale, duration)
    else:
        mvhd = b"\x00\x00\x00\x00" + struct.pack(">IIII", 0, 0, timescale, duration)
    moov = box(b"moov", box(b"mvhd", mvhd + b"\x00" * 80))
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    mdat = box(b"mdat", b"\x00" * 4096)
    return ftyp + (mdat + moov if moov_last else moov + mdat)


def wav(seconds: float, rate: int = 16000, data: bool = True) -> bytes:
    """A 16-bit mono WAV header whose data chunk says `seconds` (its samples left out unless
    `data`: zeros)."""
    size = round(seconds * rate) * 2
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    head = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack(
        "<I", 16) + fmt + b"data" + struct.pack("<I", size)
    return head + (b"\x00" * size if data else b"")


def flac(seconds: float, rate: int = 44100) -> bytes:
    samples = round(seconds * rate)
    packed = rate << 44 | 1 << 41 | 15 << 36 | samples
    info = struct.pack(">HH", 4096, 4096) + b"\x00" * 6 + packed.to_bytes(8, "big") + \
        b"\x00" * 16
    return b"fLaC" + b"\x80" + len(info).to_bytes(3, "big") + info


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"
