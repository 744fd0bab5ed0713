"""`warden audit`: search, show and tail the flight recorder's records (output side only)."""

from __future__ import annotations

import sys
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import orjson

from warden.audit.reader import (
    Filter,
    ReadStats,
    Request,
    matches,
    read_records,
    record_files,
    requests,
)
from warden.config.units import parse_duration
from warden.record.files import OPEN_NAME
from warden.record.render import iso_wall
from warden.stream.observer import Verdict

# Every verdict a record can carry (`--verdict` takes one of these).
VERDICTS = tuple(value for name, value in vars(Verdict).items() if name.isupper())

HEADER = "received                     id                               status verdict        " \
         "duration  model / backend / endpoint"


def when(value: str | None, now: float) -> str | None:
    """`value` as the records write a time, so that it compares with theirs as text: an ISO
    8601 time (UTC unless it gives an offset) or a duration ago ("30s", "10m", "2h", "1d").
    ValueError for anything else (compared as text, it would match nothing, or everything)."""
    if value is None:
        return None
    try:
        return iso_wall(now - parse_duration(value))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not a time: {value!r} (an ISO 8601 time such as "
                         "2026-05-01T12:00:00Z, or a duration ago such as 10m, 2h, 1d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_wall(moment.timestamp())


def line(request: Request) -> str:
    received = request.get("received") or "-"
    status = request.get("status")
    duration = request.get("duration")
    return (f"{received:<28} {request.id:<32} {status if status is not None else '-':>6} "
            f"{request.get('verdict') or ('-' if request.end else 'no end'):<14} "
            f"{f'{duration:.3f}s' if isinstance(duration, float) else '-':>9}  "
            f"{request.get('model') or '-'} / {request.get('backend') or '-'} / "
            f"{request.get('endpoint') or '-'}")


def search(directory: str, keep: Filter, as_json: bool, limit: int | None,
           out: TextIO = sys.stdout) -> int:
    stats = ReadStats()
    shown = 0
    if not as_json:
        print(HEADER, file=out)
    for request in requests(read_records(record_files(directory), stats)):
        if not keep(request):
            continue
        if as_json:
            out.write(orjson.dumps({"id": request.id, "start": request.start,
                                    "end": request.end}).decode() + "\n")
        else:
            print(line(request), file=out)
        shown += 1
        if limit is not None and shown >= limit:
            break
    skipped = stats.unreadable_lines
    print(f"{shown} requests ({stats.records} records in {stats.files} files"
          f"{f', {skipped} unreadable lines skipped' if skipped else ''})", file=sys.stderr)
    return 0


def show(directory: str, request_id: str, out: TextIO = sys.stdout) -> int:
    found = [r for r in requests(read_records(record_files(directory)))
             if r.id == request_id]
    if not found:
        print(f"no record of request {request_id} in {directory}", file=sys.stderr)
        return 1
    for request in found:
        for record in (request.start, *request.extra_starts, request.end):
            if record is not None:
                out.write(orjson.dumps(record, option=orjson.OPT_INDENT_2).decode() + "\n")
        if request.end is None:
            print(f"(no end record: {request_id} was in flight, or its gateway died)",
                  file=out)
    return 0


def tail(directory: str, count: int, follow: bool, out: TextIO = sys.stdout,
         poll: float = 0.5) -> int:
    """The last `count` requests; with `follow`, then every new record as it is written."""
    last = deque(requests(read_records(record_files(directory))), maxlen=count)
    print(HEADER, file=out)
    for request in last:
        print(line(request), file=out)
    if not follow:
        return 0
    path = Path(directory) / OPEN_NAME
    position, inode = _end_of(path)
    while True:
        out.flush()
        time.sleep(poll)
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if stat.st_ino != inode or stat.st_size < position:  # rotated: a new open file
            position, inode = 0, stat.st_ino
        with open(path, "rb") as f:
            f.seek(position)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        position += len(complete)
        for raw in complete.splitlines():
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            print(f"{record.get('type', '?'):<5} {record.get('id')} "
                  f"{record.get('received')} "
                  f"{record.get('endpoint') or ''}{record.get('status') or ''} "
                  f"{record.get('verdict') or ''}", file=out)


def replay(directory: str, keep: Filter, target: str, *, paced: bool, speed: float,
           concurrency: int, timeout: float, include_refused: bool = False,
           out: TextIO = sys.stdout) -> int:
    """Re-send the matching requests to `target`; one line each: what it was, what it is.
    Returns 1 if any got no answer, or one cut short (a script must not read that as success)."""
    import asyncio

    from warden.audit.replay import replay as replay_all

    chosen = [r for r in requests(read_records(record_files(directory))) if keep(r)]
    if not chosen:
        print(f"no recorded request matches in {directory}", file=sys.stderr)
        return 1
    outcomes = asyncio.run(replay_all(chosen, target, paced=paced, speed=speed,
                                      concurrency=concurrency, timeout=timeout,
                                      include_refused=include_refused))
    unanswered = cut = 0
    for outcome in outcomes:
        was = f"{outcome.request.get('status') or '-'} {outcome.request.get('verdict') or ''}"
        if outcome.skipped:
            now = f"skipped: {outcome.skipped}"
        else:
            now = (f"{outcome.status or '-'} {outcome.verdict or ''} {outcome.duration:.3f}s"
                   f"{f'  ({outcome.error})' if outcome.error else ''}")
            unanswered += outcome.status == 0
            cut += outcome.status != 0 and outcome.error is not None
        print(f"{outcome.request.id:<32} recorded {was.strip():<22} replayed {now}", file=out)
    print(f"{len(outcomes)} replayed to {target}: {unanswered} without an answer, {cut} "
          "with an answer cut short", file=sys.stderr)
    return 1 if unanswered or cut else 0


def _end_of(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0, -1
    return stat.st_size, stat.st_ino


__all__ = ["Filter", "matches", "replay", "search", "show", "tail", "when"]
