"""How rotated record files are compressed, and how any record file is opened to be read.

zstd is the default: on record lines it compresses 3-4 times as fast as gzip at level 1, to a
smaller file (measured on varied chat records: 300 vs 88 MB/s, 34% vs 41% of the size), and the
writer that compresses shares the machine with the proxy. gzip stays for sites whose tools
expect it (`zcat`, log shippers). Both release the GIL while they compress, so the event loop
runs meanwhile. zstd comes from the standard library from Python 3.14 (`compression.zstd`),
before that from its backport (`backports.zstd`, the same code and API).

A file's name says its codec: `.jsonl.zst`, `.jsonl.gz`, or plain `.jsonl`.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import IO

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

SUFFIXES = {"zstd": ".zst", "gzip": ".gz"}


def open_compressed(path: Path, codec: str, level: int) -> IO[bytes]:
    """`path` opened to be written, compressed with `codec` (zstd | gzip) at `level`."""
    if codec == "zstd":
        return zstd.open(path, "wb", level=level)
    return gzip.open(path, "wb", compresslevel=level)


def open_records(path: Path) -> IO[bytes]:
    """A record file opened to be read, decompressed by its suffix."""
    if path.name.endswith(".zst"):
        return zstd.open(path, "rb")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


# What a torn or truncated compressed file raises when read (besides OSError and EOFError).
READ_ERRORS = (OSError, EOFError, zstd.ZstdError)
