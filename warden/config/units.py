"""Human units in config: durations ("5s", "250ms", "2m") and sizes ("100MiB", "8KB")."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_SCALE = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a string with a unit; rejects negatives."""
    if isinstance(value, bool):
        raise ValueError("not a duration (use e.g. 5s, 250ms, 2m, 7d)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_SCALE[m.group(2)]
    else:
        raise ValueError("not a duration (use e.g. 5s, 250ms, 2m, 7d)")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from an integer or a string with a unit (KB = 1000, KiB = 1024)."""
    if isinstance(value, bool):
        raise ValueError("not a size (use e.g. 100MiB, 512KB)")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        unit = (m.group(2) or "B").lower()
        size = int(float(m.group(1)) * _SIZE_SCALE[unit])
    else:
        raise ValueError("not a size (use e.g. 100MiB, 512KB)")
    if size < 0:
        raise ValueError("must not be negative")
    return size
