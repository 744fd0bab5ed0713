"""A file written whole or not at all: the bytes go to `<name>.tmp` beside it, which is then
renamed over it. A reader never sees a file half written, and a write that fails (a full disk)
leaves neither a torn file nor the temporary one. (`.tmp` is the project's name for a file
still being written: the records' reader skips such files, as the files' recovery does.)"""

from __future__ import annotations

import os
from pathlib import Path


def write_whole(path: Path, data: bytes) -> None:
    """`data` at `path`, whole or not at all; raises OSError when the disk refuses."""
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
