"""An incident's files in `<recorder dir>/incidents/`: `incident-<id>.json` (the record) and
`metrics-<id>.txt` (the backend's `/metrics` as it died, when it answered), each written whole
or not at all (warden.whole_file); the newest `KEEP_INCIDENTS` are kept."""

from __future__ import annotations

from pathlib import Path

import orjson

from warden.whole_file import write_whole

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
