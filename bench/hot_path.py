"""Pure-Python cost of the gateway's data path, per request, with no sockets.

The real protocol objects driven by hand (build_support/training.py's rig): a request's bytes
go in, the upstream's response bytes come back, and the time per round is the data path's
share of a proxied request (the socket syscalls, which every proxy pays, are excluded). Run:

    python -m bench.hot_path
"""

from __future__ import annotations

import time

import uvloop

from build_support import training
from build_support.training import BODY, REQUEST, RESPONSE, SSE_EVENT
from warden import compiled


class Rig(training.Rig):
    """The training rig (build_support/training.py), with logs and traces on at `observe`'s
    sample rate (0: off, as shipped), their costs kept in this process (`observe_in_process`)."""

    def __init__(self, request: bytes = REQUEST, recorder: str | None = None,
                 guard: bool = True, flush_every: int = 100, extra: dict | None = None,
                 observe: float = 0.0) -> None:
        super().__init__(request, recorder, guard, flush_every,
                         {**observing(observe), **(extra or {})})
        if observe:
            observe_in_process(self.gateway)


def observing(sample: float) -> dict:
    """The settings of logs and traces at `sample` (0: as shipped, off)."""
    if not sample:
        return {}
    return {"logging": {"format": "json", "access_log": {"enabled": True, "sample": sample}},
            "tracing": {"enabled": True, "sample": sample}}


def observe_in_process(gateway) -> None:
    """Logs and traces whose every cost stays in this process, and is counted the same on
    every run (nothing here depends on time): the access lines are formatted and written to
    /dev/null as the log output's writer does, every 64 lines, on the thread that queues the
    64th (the writer's own thread, which looks every 50 ms, is told to wait beyond the run);
    the spans are encoded as the OTLP exporter encodes them (protobuf), in batches of 64 (the
    gateway sends up to 128), and dropped (the HTTP post to a collector is not counted)."""
    import os
    from collections import deque

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import SpanProcessor

    from warden.observe.log_output import LogOutput
    from warden.observe.logs import JsonFormatter

    class Batches(SpanProcessor):
        def __init__(self) -> None:
            self.batch: list = []

        def on_end(self, span) -> None:
            self.batch.append(span)
            if len(self.batch) == 64:
                encode_spans(self.batch).SerializePartialToString()
                self.batch = []

    output = LogOutput(JsonFormatter(), 10_000, fd=os.open(os.devnull, os.O_WRONLY),
                       interval=1e6)
    output.install("INFO")

    class Written(deque):
        def append(self, record) -> None:
            super().append(record)
            if len(self) == 64:
                output.write_queued()

    output.lines = output.handler.lines = Written()  # type: ignore[assignment]
    gateway.parts.tracing.sink.processor = Batches()


async def measure(rounds: int) -> None:
    rig = Rig()
    rig.pool.release(rig.upstream)
    rig.client.data_received(REQUEST)
    rig.writes.flush()
    assert rig.upstream.transport.out, "the request was not written upstream"
    rig.upstream.data_received(RESPONSE)
    rig.writes.flush()
    assert rig.client.transport.out[-1].endswith(BODY), rig.client.transport.out[-1]
    for _ in range(1000):
        rig.one_round()
    per_request = min(_timed(rig.one_round, rounds) for _ in range(5))

    # One SSE chunk relayed and observed (the per-chunk cost of a stream).
    chunk = b"%x\r\n%s\r\n" % (len(SSE_EVENT), SSE_EVENT)
    rig.start_stream()

    def one_chunk() -> None:
        rig.upstream.data_received(chunk)
        rig.writes.flush()
        rig.client.transport.out.clear()

    per_chunk = min(_timed(one_chunk, rounds) for _ in range(5))

    # The same request recorded in full, the records handed over every 4,000 requests.
    recording = Rig(recorder="full", flush_every=4000)
    for _ in range(8000):
        recording.one_round()
    per_recorded = min(_timed(recording.one_round, rounds) for _ in range(5))
    print(f"data path ({compiled.describe()}), no syscalls: {per_request:.1f} µs per "
          f"non-streaming request ({per_recorded:.1f} recorded in full), {per_chunk:.2f} µs "
          f"per relayed SSE chunk")


def _timed(step, rounds: int) -> float:
    """µs per call of `step`, over `rounds` calls."""
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    return (time.perf_counter() - start) / rounds * 1e6


if __name__ == "__main__":
    uvloop.run(measure(20_000))
