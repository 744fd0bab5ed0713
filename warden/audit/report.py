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
        tenants = incident.get("tenants")
        among = f" (tenants: {', '.join(tenants)})" if tenants else ""
        print(f"{incident['id']:<36} {incident['at']}  {incident['backend']:<12} "
              f"{incident['detected_by']:<36} {len(suspects)} suspects{among}; {lead}",
              file=out)
    return 0


def show_incident(directory: str, incident_id: str, out: TextIO = sys.stdout) -> int:
    path = Path(directory) / "incidents" / f"incident-{incident_id}.json"
    if not path.exists():
        print(f"no incident {incident_id} in {directory}/incidents", file=sys.stderr)
        return 1
    out.write(path.read_text() + "\n")
    return 0


BUNDLE_README = """Incident {id}: backend {backend} died at {at} ({detected_by}).

incident.json   the incident as Warden wrote it: signals, and the suspects ranked (score,
                what is unusual in their parameters, age, outcome)
suspects.jsonl  each suspect's audit records, in rank order: {{"id", "start", "end"}}; the
                start record holds the request body exactly as the client sent it
metrics.txt     the backend's /metrics as it died, when it still answered
timeline.txt    what happened, in order

Reproduce against a scratch server:  warden bisect {id} --target http://HOST:PORT
or one request:                      warden audit replay --id ID --target http://HOST:PORT --fast
"""


def export_incident(directory: str, incident_id: str, output: str | None,
                    out: TextIO = sys.stdout) -> int:
    """Write a .tar.gz an engineer can attach to a bug report."""
    import io
    import tarfile

    from warden.audit.reader import read_records, record_files, requests

    base = Path(directory) / "incidents"
    path = base / f"incident-{incident_id}.json"
    if not path.exists():
        print(f"no incident {incident_id} in {base}", file=sys.stderr)
        return 1
    incident = orjson.loads(path.read_bytes())
    ranked = [s["id"] for s in incident["suspects"]]
    found = {r.id: r for r in requests(read_records(record_files(directory)))
             if r.id in set(ranked)}
    suspects = b"".join(orjson.dumps({"id": rid, "start": found[rid].start,
                                      "end": found[rid].end}) + b"\n"
                        for rid in ranked if rid in found)
    files = {"README.txt": BUNDLE_README.format(**incident).encode(),
             "incident.json": path.read_bytes(), "suspects.jsonl": suspects,
             "timeline.txt": timeline(incident, found).encode()}
    metrics = base / f"metrics-{incident_id}.txt"
    if metrics.exists():
        files["metrics.txt"] = metrics.read_bytes()
    target = Path(output or f"incident-{incident_id}.tar.gz")
    with tarfile.open(target, "w:gz") as bundle:
        for name, data in files.items():
            info = tarfile.TarInfo(f"incident-{incident_id}/{name}")
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    missing = len(ranked) - len([rid for rid in ranked if rid in found])
    print(f"{target}: {len(files)} files, {len(ranked) - missing} suspects with their records"
          f"{f' ({missing} no longer in the records)' if missing else ''}", file=out)
    return 0


def timeline(incident: dict, found: dict) -> str:
    """Arrivals of the suspects and the death's signals, in order (UTC)."""
    events = [(incident["at"], f"backend {incident['backend']} died: {incident['detected_by']}")]
    for signal in incident["signals"][1:]:
        events.append((incident["at"], f"  +{signal['after']:.6f}s {signal['how']}"
                                       f" ({signal['request']})"))
    for suspect in incident["suspects"]:
        request = found.get(suspect["id"])
        received = request.get("received") if request is not None else None
        if isinstance(received, str):
            unusual = "".join(f"; {reason}" for reason in suspect["unusual"])
            events.append((received, f"request {suspect['id']} arrived ({suspect['endpoint']}, "
                                      f"score {suspect['score']}{unusual})"))
    events.sort(key=lambda event: event[0])
    return "".join(f"{at}  {what}\n" for at, what in events)
