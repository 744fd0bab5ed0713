"""Inline media read without decoding it whole: a data URL split as vLLM splits it, and its
base64 decoded only in the windows a header parser asks for.

Rules: nothing here raises on hostile input, and no call decodes more than it is asked for
(a window of a few bytes to a few KB), whatever the size of the item. The whole item's size
is bounded elsewhere (guard.limits.max_media_bytes, rule mm-too-much-media).

vLLM decodes strictly from 0.24 on (`pybase64.b64decode(data, validate=True)`), leniently
before (characters outside the alphabet skipped). Base64 wrapped in lines (MIME) is therefore
valid for some versions: it is read here from its beginning only, and never judged past it.
"""

from __future__ import annotations

import binascii
import re

# What a header parser may read from the beginning of base64 that is not one unbroken run
# (line breaks): enough for every header read in full here but a JPEG's after a large EXIF.
PREFIX_BYTES = 64 * 1024
_WHITESPACE = re.compile(r"[\t\n\r\f\v ]+")
_BASE64_OR_WHITESPACE = re.compile(r"[A-Za-z0-9+/=\t\n\r\f\v ]*")


def split_data_url(url: str) -> tuple[str, str] | str:
    """(media type, base64 data) of a `data:` URL as vLLM splits it (the data after the first
    ",", the encoding the last ";" part before it), or why vLLM cannot read it."""
    spec, comma, data = url[5:].partition(",")
    if not comma:
        return "the data URL has no ',' before its data"
    media_type, semicolon, encoding = spec.rpartition(";")
    if not semicolon or encoding != "base64":
        return "only base64 data URLs are read (data:<type>;base64,<data>)"
    return media_type.partition(";")[0].strip().lower(), data


class Base64View:
    """The bytes that base64 text stands for (`text[start:stop]`: one frame of several is a
    range, not a copy), read by window: `read(offset, length)` decodes only the characters
    that hold those bytes.

    `read` returns the bytes (fewer than asked when the data ends there), or None where it
    cannot tell (past the prefix of line-wrapped base64). `invalid` says why the text is not
    base64, once a window showed it."""

    __slots__ = ("_prefix", "_start", "_stop", "invalid", "text")

    def __init__(self, text: str, start: int = 0, stop: int | None = None):
        self.text = text
        self._start = start
        self._stop = len(text) if stop is None else stop
        self.invalid: str | None = None
        self._prefix: bytes | None = None  # set once the text proved not to be one run

    @property
    def size(self) -> int:
        """The decoded size (an upper bound for line-wrapped base64)."""
        tail = self.text[max(self._start, self._stop - 2):self._stop]
        padding = 2 if tail.endswith("==") else 1 if tail.endswith("=") else 0
        return max(0, (self._stop - self._start) * 3 // 4 - padding)

    def read(self, offset: int, length: int) -> bytes | None:
        if offset < 0 or length <= 0 or self.invalid is not None:
            return b"" if self.invalid is None else None
        if self._prefix is None:
            start = offset // 3 * 4
            stop = min(-(-(offset + length) // 3) * 4, self._stop - self._start)
            chunk = self.text[self._start + start:self._start + stop]
            try:
                data = binascii.a2b_base64(chunk, strict_mode=True)
            except (binascii.Error, ValueError):
                if not self._lenient():
                    return None
            else:
                skip = offset - start // 4 * 3
                return data[skip:skip + length]
        prefix = self._prefix
        assert prefix is not None
        if offset + length > len(prefix) and self._prefix_is_partial():
            return None
        return prefix[offset:offset + length]

    def _lenient(self) -> bool:
        """A window did not decode strictly: either the text is line-wrapped (decode its
        prefix, as vLLM before 0.24 would) or it is not base64 at all (say why)."""
        head = self.text[self._start:min(self._stop, self._start + _prefix_chars())]
        if _BASE64_OR_WHITESPACE.fullmatch(head) is None:
            self.invalid = "its data is not base64 (a character outside A-Z a-z 0-9 + / =)"
            return False
        compact = _WHITESPACE.sub("", head)
        compact = compact[:len(compact) // 4 * 4]
        try:
            self._prefix = binascii.a2b_base64(compact)
        except (binascii.Error, ValueError):
            self.invalid = "its data is not valid base64"
            return False
        return True

    def _prefix_is_partial(self) -> bool:
        return self._stop - self._start > _prefix_chars()


def _prefix_chars() -> int:
    # Room for line breaks: MIME wraps every 76 characters with CRLF (78 per 57 bytes).
    return PREFIX_BYTES * 4 // 3 * 2


_PRINTABLE = bytes(range(0x20, 0x7F)) + b"\t\n\r"
_TEXT_IMAGE_STARTS = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"#define",
                      b"/* XPM */", b"%!PS")
# Binary formats whose signature is printable: a short item of one is not text.
_PRINTABLE_SIGNATURES = (b"RIFF", b"fLaC", b"ID3", b"OggS", b"GIF8", b"FORM", b"#!AMR",
                         b"MThd", b"caff")


def only_zeros(head: bytes) -> bool:
    """Whether data begins with nothing but zero bytes (at least 4): no image format Pillow
    reads starts so (a buffer never filled, a placeholder)."""
    return len(head) >= 4 and not head[:16].strip(b"\x00")


def looks_like_text(head: bytes, image: bool) -> bool:
    """Whether bytes that should be media are text instead (an HTML error page, JSON, a
    file name): printable ASCII throughout. Pillow reads a few text image formats (netpbm,
    XBM, XPM, EPS): those are not text here when `image`."""
    if not head or head.translate(None, _PRINTABLE):  # (what is left is not printable)
        return False
    if head.startswith(_PRINTABLE_SIGNATURES):
        return False
    return not (image and head.startswith(_TEXT_IMAGE_STARTS))
