"""An incident's files in `<recorder dir>/incidents/`: `incident-<id>.json` (the record) and
`metrics-<id>.txt` (the backend's `/metrics` as it died, when it answered), each written whole
or not at all; the newest `KEEP_INCIDENTS` are kept."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

KEEP_INCIDENTS = 200


def write_incident(incidents: Path, incident_id: str, record: dict,
                   metrics: str | None) -> None:
    """Write one incident's files (the metrics first: the record names them), then drop the
    oldest beyond the bound. Raises OSError when the disk refuses (nothing half written)."""
    incidents.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        write_whole(incidents / f"metrics-{incident_id}.txt", metrics.encode())
    write_whole(incidents / f"incident-{incident_id}.json",
                orjson.dumps(record, option=orjson.OPT_INDENT_2))
    for old in sorted(incidents.glob("incident-*.json"))[:-KEEP_INCIDENTS]:
        old.unlink(missing_ok=True)
        old.with_name(old.name.replace("incident-", "metrics-")).with_suffix(".txt") \
            .unlink(missing_ok=True)


def write_whole(path: Path, data: bytes) -> None:
    """`data` at `path` whole or not at all (written beside it, renamed over it): a reader
    (`warden audit incidents`, a test) never sees a file half written, and a failed write
    leaves none."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
