"""Reading the flight recorder's files back: records in order, requests joined, filters.

Files are read oldest first (by modification time; the open `warden.jsonl` last, after the
closed ones are listed again: a rotation during a long read loses nothing), plain or
compressed (zstd or gzip, by their suffix: record/codecs.py). A line that does not parse (the
torn last line of a gateway killed mid-write) is skipped and counted. A request is its `start` and
`end` records joined by id; one whose `end` never came (in flight, or lost with its gateway) is
reported with `end` None.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from warden.record.codecs import READ_ERRORS, open_records
from warden.record.files import OPEN_NAME


def record_files(directory: str | Path) -> Iterator[Path]:
    """The files to read, oldest first, as they are when each is reached: the closed files
    are listed again before the open one is read, so a rotation while the older ones were
    read loses nothing (the rotated file is read under its new name, compressed or not; a
    file is read once, whatever its suffix). A file deleted before its turn (the cap) is
    skipped."""
    base = Path(directory)
    seen: set[str] = set()
    while True:
        fresh = [path for path in _closed_files(base) if _stem(path) not in seen]
        if not fresh:
            break
        for path in fresh:
            seen.add(_stem(path))
            yield path
    current = base / OPEN_NAME
    if current.exists():
        yield current


def _closed_files(base: Path) -> list[Path]:
    found = []
    for path in base.glob("warden*.jsonl*"):
        if path.name == OPEN_NAME or path.name.endswith(".tmp"):
            continue
        try:
            found.append((path.stat().st_mtime, path))
        except FileNotFoundError:   # (deleted since the listing: the cap, a compression)
            continue
    return [path for _, path in sorted(found)]


def _stem(path: Path) -> str:
    """A rotated file's name without its compression (`.jsonl`, `.jsonl.zst`: one file)."""
    return path.name.partition(".jsonl")[0]


@dataclass
class ReadStats:
    files: int = 0
    records: int = 0
    unreadable_lines: int = 0


def read_records(paths: Iterable[Path], stats: ReadStats | None = None) -> Iterator[dict]:
    stats = stats if stats is not None else ReadStats()
    for path in paths:
        stats.files += 1
        try:
            with open_records(path) as f:
                for line in f:
                    try:
                        record = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        stats.unreadable_lines += 1
                        continue
                    if isinstance(record, dict) and "id" in record:
                        stats.records += 1
                        yield record
        except READ_ERRORS:  # a file rotated away mid-read, a torn compressed file
            stats.unreadable_lines += 1


@dataclass
class Request:
    id: str
    start: dict | None = None
    end: dict | None = None
    extra_starts: list[dict] = field(default_factory=list)  # a reused client request id

    def get(self, key: str) -> object:
        """A field from the end record, else the start record."""
        for record in (self.end, self.start):
            if record is not None and record.get(key) is not None:
                return record[key]
        return None


def requests(records: Iterable[dict]) -> Iterator[Request]:
    """Join starts and ends by id, yielding each request when its end arrives (then the ones
    that never ended, last). Memory holds only requests still waiting for their end."""
    waiting: dict[str, Request] = {}
    for record in records:
        rid = record["id"]
        if record.get("type") == "start":
            if rid in waiting:  # the same client id again before the first one ended
                waiting[rid].extra_starts.append(record)
            else:
                waiting[rid] = Request(rid, start=record)
        elif record.get("type") == "end":
            request = waiting.pop(rid, None) or Request(rid)
            request.end = record
            yield request
    yield from waiting.values()


Filter = Callable[[Request], bool]


def matches(*, since: str | None = None, until: str | None = None, model: str | None = None,
            backend: str | None = None, status: int | None = None,
            verdict: str | None = None, text: str | None = None,
            request_id: str | None = None, tenant: str | None = None,
            principal: str | None = None) -> Filter:
    """A predicate over joined requests; `since`/`until` compare ISO 8601 UTC times as text
    (records write them in one fixed format, so text order is time order)."""
    def keep(request: Request) -> bool:
        received = request.get("received") or ""
        if since is not None and received < since:
            return False
        if until is not None and received > until:
            return False
        if request_id is not None and request.id != request_id:
            return False
        if model is not None and request.get("model") != model:
            return False
        if backend is not None and request.get("backend") != backend:
            return False
        if status is not None and request.get("status") != status:
            return False
        if verdict is not None and request.get("verdict") != verdict:
            return False
        if tenant is not None and request.get("tenant") != tenant:
            return False
        if principal is not None and request.get("principal") != principal:
            return False
        if text is not None:
            body = request.start.get("body") if request.start else None
            if not isinstance(body, str) or text not in body:
                return False
        return True

    return keep
