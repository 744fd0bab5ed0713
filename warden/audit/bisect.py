"""`warden bisect`: replay an incident's suspects one at a time against a scratch backend,
watching its health after each, and name the first one that kills it.

A suspect kills the scratch backend when its own answer is vLLM's engine-dead 5xx, or when the
backend's `/health` stops answering 200 within `settle` seconds after it. The backend must be
healthy before each suspect is sent (a dead scratch backend proves nothing about the next one).
Suspects go in the incident's ranked order (most likely first), or in the order they arrived
(`chronological`), which replays the sequence the engine really saw.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

import orjson

from warden.audit.reader import Request, read_records, record_files, requests
from warden.audit.replay import Replayed, replay_one
from warden.forensics.incidents import ENGINE_DEAD_MARKERS


@dataclass
class Verdict:
    request_id: str
    killed: bool
    why: str


async def healthy(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.1\r\nhost: {host}:{port}\r\nconnection: close"
                     "\r\n\r\n".encode())
        async with asyncio.timeout(timeout):
            status_line = await reader.readline()
        return status_line.split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError, IndexError):
        return False
    finally:
        writer.close()


async def _watch(host: str, port: int, settle: float, poll: float = 0.1) -> bool:
    """True if the backend stays healthy for `settle` seconds."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if not await healthy(host, port):
            return False
        await asyncio.sleep(poll)
    return True


def _engine_dead(outcome: Replayed) -> bool:
    return outcome.status >= 500 and outcome.body is not None and any(
        outcome.body.find(marker) >= 0 for marker in ENGINE_DEAD_MARKERS)


async def bisect(suspects: list[Request], target: str, settle: float, timeout: float,
                 out: TextIO) -> Verdict | None:
    parts = urlsplit(target)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    for request in suspects:
        if not await healthy(host, port):
            print(f"{target} is not healthy: restart it and run again (from {request.id})",
                  file=out)
            return None
        outcome = await replay_one(request, host, port, timeout, keep_body=True)
        if outcome.skipped:
            print(f"{request.id:<32} skipped: {outcome.skipped}", file=out)
            continue
        if _engine_dead(outcome):
            return Verdict(request.id, True, f"its answer was the engine-dead {outcome.status}")
        if not await _watch(host, port, settle):
            return Verdict(request.id, True, f"/health failed within {settle:g}s after it")
        print(f"{request.id:<32} survived ({outcome.status or outcome.error})", file=out)
    return Verdict("", False, "no suspect killed the backend")


def run(directory: str, incident_id: str, target: str, *, chronological: bool,
        settle: float, timeout: float, out: TextIO = sys.stdout) -> int:
    path = Path(directory) / "incidents" / f"incident-{incident_id}.json"
    if not path.exists():
        print(f"no incident {incident_id} in {directory}/incidents", file=sys.stderr)
        return 1
    ranked = [s["id"] for s in orjson.loads(path.read_bytes())["suspects"]]
    recorded = {r.id: r for r in requests(read_records(record_files(directory)))
                if r.id in set(ranked)}
    suspects = [recorded[rid] for rid in ranked if rid in recorded]
    missing = [rid for rid in ranked if rid not in recorded]
    if missing:
        print(f"not in the records (rotated away?): {', '.join(missing)}", file=out)
    if chronological:
        suspects.sort(key=lambda r: r.get("received") or "")
    verdict = asyncio.run(bisect(suspects, target, settle, timeout, out))
    if verdict is None:
        return 2
    if verdict.killed:
        print(f"the killer: {verdict.request_id} ({verdict.why})", file=out)
        return 0
    print(verdict.why, file=out)
    return 1
