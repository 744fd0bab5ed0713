"""vLLM version strings ("0.11.0", "0.32.0+cpu", "0.9.0.1") as comparable tuples."""

from __future__ import annotations


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch); a local suffix (+cpu) and a fourth part are ignored, missing
    or non-numeric parts count as 0."""
    parts = [int(p) for p in text.split("+")[0].split(".")[:3] if p.isdigit()]
    return tuple([*parts, 0, 0, 0][:3])  # type: ignore[return-value]
