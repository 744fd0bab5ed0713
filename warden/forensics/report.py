"""`warden incidents`: the incident files the detector wrote, listed and shown."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import orjson


def incident_files(directory: str) -> list[Path]:
    return sorted((Path(directory) / "incidents").glob("incident-*.json"))


def list_incidents(directory: str, out: TextIO = sys.stdout) -> int:
    files = incident_files(directory)
    if not files:
        print(f"no incidents in {directory}/incidents", file=sys.stderr)
        return 0
    for path in files:
        incident = orjson.loads(path.read_bytes())
        suspects = incident["suspects"]
        top = suspects[0] if suspects else None
        lead = (f"first suspect {top['id']}"
                f"{': ' + top['unusual'][0] if top and top['unusual'] else ''}"
                if top else "no suspects")
        print(f"{incident['id']:<36} {incident['at']}  {incident['backend']:<12} "
              f"{incident['detected_by']:<36} {len(suspects)} suspects; {lead}", file=out)
    return 0


def show_incident(directory: str, incident_id: str, out: TextIO = sys.stdout) -> int:
    path = Path(directory) / "incidents" / f"incident-{incident_id}.json"
    if not path.exists():
        print(f"no incident {incident_id} in {directory}/incidents", file=sys.stderr)
        return 1
    out.write(path.read_text() + "\n")
    return 0
