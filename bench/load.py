"""Drive an OpenAI endpoint with a workload and report what its clients saw.

    python -m bench.load --url http://127.0.0.1:8000 --rate 20 --duration 30
    python -m bench.load --url http://127.0.0.1:8000 --trace requests.jsonl --speed 2

Each request is sent at its planned time on a connection of its own (open-loop: a slow server
does not slow the arrivals). Reported: time to first token (first SSE event; the whole answer
for non-streaming requests), inter-token latency (gaps between events), end-to-end latency
(p50/p90/p99), throughput and errors by kind.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import orjson
import uvloop

from bench.workload import TimedRequest, WorkloadSpec, build, load_trace
from warden.stream.sse import SseDecoder
from warden.upstream.connection import UpstreamConnection
from warden.upstream.sink import BodyMode


@dataclass
class Outcome:
    status: int = 0
    error: str | None = None
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    e2e: float | None = None
    output_tokens: int = 0


class _Timing:
    """A ResponseSink that timestamps SSE events as they arrive."""

    def __init__(self, outcome: Outcome, start: float, done: asyncio.Future[None]):
        self.outcome = outcome
        self.start = start
        self.done = done
        self.decoder = SseDecoder()
        self.last: float | None = None
        self.saw_done = False
        self.body: list[bytes] = []

    def on_head(self, status: int, head: bytes) -> int:
        self.outcome.status = status
        return BodyMode.DECODED

    def on_raw(self, data: bytes, last: bool) -> None:  # pragma: no cover - decoded mode only
        raise AssertionError

    def observe_piece(self, piece: bytes) -> None:  # pragma: no cover - decoded mode only
        raise AssertionError("decoded mode")

    def on_body(self, chunk: bytes) -> None:
        now = time.perf_counter()
        self.body.append(chunk)
        for payload in self.decoder.feed(chunk):
            if self.last is None:
                self.outcome.ttft = now - self.start
            else:
                self.outcome.gaps.append(now - self.last)
            self.last = now
            if payload == b"[DONE]":
                self.saw_done = True
            elif payload.startswith(b"{") and payload.find(b'"usage":{') >= 0:
                usage = orjson.loads(payload).get("usage") or {}
                self.outcome.output_tokens = usage.get("completion_tokens", 0)

    def flush(self) -> None:
        pass

    def on_complete(self) -> None:
        outcome = self.outcome
        outcome.e2e = time.perf_counter() - self.start
        if outcome.ttft is None:  # not a stream: the whole answer is the first token
            outcome.ttft = outcome.e2e
            if outcome.status == 200:
                usage = orjson.loads(b"".join(self.body)).get("usage") or {}
                outcome.output_tokens = usage.get("completion_tokens", 0)
        if outcome.status != 200:
            outcome.error = f"HTTP {outcome.status}"
        elif self.last is not None and not self.saw_done:
            outcome.error = "stream cut"
        _resolve(self.done)

    def on_lost(self, reason: str) -> None:
        self.outcome.error = reason
        _resolve(self.done)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def send(host: str, port: int, path: str, body: dict, timeout: float) -> Outcome:
    outcome = Outcome()
    loop = asyncio.get_running_loop()
    payload = orjson.dumps(body)
    head = (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json"
            f"\r\ncontent-length: {len(payload)}\r\n\r\n").encode()
    start = time.perf_counter()
    try:
        _, conn = await loop.create_connection(UpstreamConnection, host, port)
    except OSError as e:
        outcome.error = f"connect: {e.strerror or e.__class__.__name__}"
        return outcome
    done: asyncio.Future[None] = loop.create_future()
    conn.send([head, payload], _Timing(outcome, start, done))
    try:
        await asyncio.wait_for(done, timeout)
    except TimeoutError:
        outcome.error = "timeout"
    finally:
        conn.close()
    return outcome


async def run(url: str, requests: list[TimedRequest], speed: float = 1.0,
              timeout: float = 600.0) -> tuple[list[Outcome], float]:
    """Send every request at its time (divided by `speed`); return outcomes and wall time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path.rstrip("/") or "/v1") + "/chat/completions"
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(request: TimedRequest) -> Outcome:
        await asyncio.sleep(max(0.0, start + request.at / speed - loop.time()))
        return await send(host, port, path, request.body, timeout)

    outcomes = await asyncio.gather(*(one(r) for r in requests))
    return list(outcomes), loop.time() - start


def summarize(outcomes: list[Outcome], wall: float) -> dict:
    ok = [o for o in outcomes if o.error is None]
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            errors[outcome.error] = errors.get(outcome.error, 0) + 1
    return {
        "requests": len(outcomes), "ok": len(ok), "errors": errors,
        "throughput_rps": len(ok) / wall if wall else 0.0,
        "output_tokens_per_s": sum(o.output_tokens for o in ok) / wall if wall else 0.0,
        "ttft": percentiles([o.ttft for o in ok if o.ttft is not None]),
        "itl": percentiles([g for o in ok for g in o.gaps]),
        "e2e": percentiles([o.e2e for o in ok if o.e2e is not None]),
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99)}


def render(summary: dict) -> str:
    def ms(p: dict) -> str:
        return " / ".join("—" if p[k] is None else f"{p[k] * 1e3:.1f}" for k in ("p50", "p90",
                                                                                   "p99"))
    return "\n".join([
        f"requests {summary['requests']}, ok {summary['ok']}, errors {summary['errors'] or 0}",
        f"throughput {summary['throughput_rps']:.1f} req/s, "
        f"{summary['output_tokens_per_s']:.0f} output tokens/s",
        f"TTFT p50/p90/p99 ms: {ms(summary['ttft'])}",
        f"ITL  p50/p90/p99 ms: {ms(summary['itl'])}",
        f"E2E  p50/p90/p99 ms: {ms(summary['e2e'])}",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--trace", help="replay a JSONL trace instead of a generated workload")
    parser.add_argument("--speed", type=float, default=1.0, help="trace time divisor")
    parser.add_argument("--json", help="also write the summary here")
    for name, default in asdict(WorkloadSpec()).items():
        flag = f"--{name.replace('_', '-')}"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args()
    spec_fields = asdict(WorkloadSpec())
    spec = WorkloadSpec(**{k: getattr(args, k) for k in spec_fields})
    requests = load_trace(args.trace, spec.model) if args.trace else build(spec)
    outcomes, wall = uvloop.run(run(args.url, requests, args.speed))
    summary = summarize(outcomes, wall)
    print(render(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
