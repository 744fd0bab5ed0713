"""A minimal asyncio SSE client for benchmarks: time to first event, events, clean end."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass
class StreamResult:
    ok: bool
    ttft: float
    events: int


async def one_stream(port: int, body: bytes) -> StreamResult:
    start = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return StreamResult(False, 0.0, 0)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\n"
                 b"Content-Type: application/json\r\nConnection: close\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    ttft = 0.0
    received = b""
    try:
        while chunk := await reader.read(65536):
            if not ttft and b"data:" in received + chunk:
                ttft = time.perf_counter() - start
            received += chunk
    except OSError:
        pass
    writer.close()
    ok = received.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in received
    return StreamResult(ok, ttft, received.count(b"data: "))


async def ttft_median(port: int, body: bytes, samples: int) -> float:
    results = [await one_stream(port, body) for _ in range(samples)]
    return statistics.median(r.ttft for r in results if r.ok)


async def many_streams(port: int, body: bytes, total: int, concurrency: int) -> list[StreamResult]:
    gate = asyncio.Semaphore(concurrency)

    async def limited() -> StreamResult:
        async with gate:
            return await one_stream(port, body)

    return await asyncio.gather(*(limited() for _ in range(total)))
