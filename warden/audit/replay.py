"""Re-sending recorded requests to a target: the same method, path and content type, and the
body a backend received (a stage's rewrite when there was one: the guard's repair of a
request that kills engines, say; else the client's bytes); never a recorded secret (they
were never written). A request that never reached a backend (the gateway refused it: a
known killer, a key over its limits) is skipped unless asked for (`include_refused`).

Each replayed request gets its own connection and the id `<recorded id>.replay` (so the
target's logs tell replays apart; `.replay.2`, `.3`, ... for a recorded id seen again in the
run: two in flight with one id is what vLLM cannot take), and is read to its end: a stream
is observed as the gateway observes it, for its verdict. Pacing: as recorded (the gaps
between arrivals, divided by `speed`), or one after another as fast as possible with at most
`concurrency` at once.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from warden.audit.reader import Request
from warden.stream.observer import Ending, StreamObserver
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode


@dataclass
class Replayed:
    request: Request
    status: int = 0
    verdict: str | None = None     # for a stream: as the gateway would judge it
    duration: float = 0.0
    error: str | None = None
    skipped: str | None = None     # not sent, and why
    body: bytes | None = None      # the answer's body, when asked for (de-chunked)


class _Reader:
    """Collects one response (decoded), observing it if it is an event stream."""

    def __init__(self, done: asyncio.Future[None], outcome: Replayed, keep_body: bool):
        self._done = done
        self._outcome = outcome
        self.observer: StreamObserver | None = None
        self._kept: list[bytes] | None = [] if keep_body else None

    def on_head(self, status: int, head: bytes) -> int:
        self._outcome.status = status
        if head.lower().find(b"\r\ncontent-type: text/event-stream") >= 0:
            self.observer = StreamObserver(time.monotonic)
        return BodyMode.DECODED

    def on_body(self, chunk: bytes) -> None:
        if self.observer is not None:
            self.observer.feed(chunk)
        if self._kept is not None:
            self._kept.append(chunk)

    def on_raw(self, data: bytes, last: bool) -> None:
        raise AssertionError("decoded mode")

    def observe_piece(self, piece: bytes) -> None:
        raise AssertionError("decoded mode")

    def flush(self) -> None:
        pass

    def on_complete(self) -> None:
        self._end(Ending.UPSTREAM_COMPLETE, None)

    def on_lost(self, reason: str) -> None:
        self._end(Ending.UPSTREAM_LOST, reason)

    def _end(self, ending: str, error: str | None) -> None:
        if self.observer is not None:
            self._outcome.verdict = self.observer.verdict(ending)
        self._outcome.error = error
        if self._kept is not None:
            self._outcome.body = b"".join(self._kept)
        if not self._done.done():
            self._done.set_result(None)


def request_bytes(request: Request, host: str, suffix: str = ".replay",
                  include_refused: bool = False) -> tuple[bytes, bytes] | str:
    """(head, body) to re-send a recorded request, or why it cannot be."""
    start = request.start
    if start is None:
        return "no start record"
    end = request.end
    if not include_refused and end is not None and "backend" in end \
            and end["backend"] is None:   # (the recorder names none: it reached none)
        return f"never reached a backend (answered {end.get('status')} by the gateway)"
    if start.get("forwarded_body_omitted"):
        return f"the body its backend received was not recorded " \
            f"({start['forwarded_body_omitted']})"
    forwarded = start.get("forwarded_body")
    if isinstance(forwarded, str):
        body = forwarded.encode("utf-8")
    else:
        if start.get("body_omitted"):
            return f"body not recorded ({start['body_omitted']})"
        body_text = start.get("body")
        if not isinstance(body_text, str):
            return "no body recorded"
        body = base64.b64decode(body_text) if start.get("body_encoding") == "base64" \
            else body_text.encode("utf-8")
    content_type = (start.get("headers") or {}).get("content-type", "application/json")
    head = (f"{start.get('method') or 'POST'} {start['endpoint']} HTTP/1.1\r\nhost: {host}\r\n"
            f"content-type: {content_type}\r\nx-request-id: {request.id}{suffix}\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode("latin-1")
    return head, body


async def replay_one(request: Request, host: str, port: int, timeout: float,
                     keep_body: bool = False, suffix: str = ".replay",
                     include_refused: bool = False) -> Replayed:
    outcome = Replayed(request)
    prepared = request_bytes(request, f"{host}:{port}", suffix, include_refused)
    if isinstance(prepared, str):
        outcome.skipped = prepared
        return outcome
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(  # type: ignore[type-var]
                UpstreamConnection, host, port)
    except (OSError, TimeoutError) as e:
        outcome.error = f"connect: {getattr(e, 'strerror', None) or e.__class__.__name__}"
        return outcome
    done: asyncio.Future[None] = loop.create_future()
    conn.send(list(prepared), _Reader(done, outcome, keep_body))
    try:
        async with asyncio.timeout(timeout):
            await done
    except TimeoutError:
        outcome.error = f"no complete answer within {timeout:g}s"
    finally:
        conn.close()
        outcome.duration = time.monotonic() - started
    return outcome


def _arrival(request: Request) -> float:
    received = request.get("received")
    if not isinstance(received, str):
        return 0.0
    return datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()


async def replay(requests: Iterable[Request], target: str, *, paced: bool, speed: float,
                 concurrency: int, timeout: float,
                 include_refused: bool = False) -> list[Replayed]:
    """Replay in arrival order; returns the outcomes in the same order."""
    parts = urlsplit(target)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    ordered = sorted(requests, key=_arrival)
    if not ordered:
        return []
    suffixes = _suffixes(ordered)
    loop = asyncio.get_running_loop()

    async def one(n: int) -> Replayed:
        return await replay_one(ordered[n], host, port, timeout, suffix=suffixes[n],
                                include_refused=include_refused)

    if paced:
        origin, start = _arrival(ordered[0]), loop.time()

        async def at_its_time(n: int) -> Replayed:
            await asyncio.sleep(max(0.0, start + (_arrival(ordered[n]) - origin) / speed
                                    - loop.time()))
            return await one(n)

        return list(await asyncio.gather(*(at_its_time(n) for n in range(len(ordered)))))
    gate = asyncio.Semaphore(concurrency)

    async def in_turn(n: int) -> Replayed:
        async with gate:
            return await one(n)

    return list(await asyncio.gather(*(in_turn(n) for n in range(len(ordered)))))


def _suffixes(ordered: list[Request]) -> list[str]:
    """`.replay`, then `.replay.2`, `.replay.3`, ... for a recorded id seen again."""
    seen: dict[str, int] = {}
    suffixes = []
    for request in ordered:
        count = seen[request.id] = seen.get(request.id, 0) + 1
        suffixes.append(".replay" if count == 1 else f".replay.{count}")
    return suffixes
