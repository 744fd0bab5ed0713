"""Traces, the listener's half: which requests get a span, their ids, the W3C `traceparent`
read from the client and the one sent upstream. Compiled with the data path; it imports no
OpenTelemetry (observe/tracing.py, imported only when tracing is on, makes and exports the
spans it hands over).

Shape: an `ExchangeListener`. `started` (before the request's first byte goes upstream)
decides by counting whether the request is sampled (an addition and a comparison for one
that is not, as the access log), and for one that is opens its span: its parent is the
client's `traceparent` when it sent a valid one. The exchange then carries the span's own
`traceparent`, which the forwarder sends upstream in place of the client's (proxy/headers.py):
vLLM's spans (`--otlp-traces-endpoint`) become the span's children. An unsampled request's
headers are left as the client sent them. `ended` hands the span's ids and the finished
exchange to the `SpanSink`, which makes the span, complete, and queues it for export.
Sampling is Warden's alone: a client's sampled flag does not force a span (the parent's trace
is joined only when Warden samples).
"""

from __future__ import annotations

import random
import re
import time
from typing import Protocol

from warden.config.observe_schema import TracingSpec
from warden.exchange import Exchange, NativeListener
from warden.observe.access_log import WHOLE, share

# W3C Trace Context: version-traceid-parentid-flags (version 00 has nothing after; a later
# version may add fields, and is read as 00 is). Lower-case hex only.
TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


class OpenSpan:
    """A sampled exchange's span between its start and its end: its ids, and the offset
    from the monotonic clock to the epoch, read once (so its times are exact relative to one
    another)."""

    def __init__(self, trace_id: int, span_id: int, parent_id: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id  # (0: none, the span starts a trace)
        self.epoch_offset = time.time_ns() - time.monotonic_ns()

    def epoch_ns(self, monotonic: float) -> int:
        """A `time.monotonic()` instant as nanoseconds since the epoch (what spans carry)."""
        return self.epoch_offset + int(monotonic * 1e9)


class SpanSink(Protocol):
    """Where finished spans go (observe/tracing.py: the OpenTelemetry SDK's batch processor
    and the OTLP exporter). `end` runs on the loop: it must not block."""

    def end(self, opened: OpenSpan, exchange: Exchange) -> None: ...

    async def close(self, timeout: float) -> bool: ...


def parent_of(traceparent: bytes | None) -> tuple[int, int] | None:
    """(trace id, span id) of a valid W3C `traceparent`, else None (ignored, as the
    specification says of an invalid one)."""
    if traceparent is None:
        return None
    match = TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, rest = match.group(1), match.group(5)
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    return (trace_id, span_id) if trace_id and span_id else None


class Tracing(NativeListener):
    """The tracer as an `ExchangeListener` (built by observe/tracing.py's `build_tracing`)."""

    def __init__(self, spec: TracingSpec, sink: SpanSink) -> None:
        self.hears_started = True  # (the span opens before the send: its traceparent goes)
        self.sink = sink
        self.ids = random.Random()  # (seeded from the system; ids need not be secret)
        self.step = share(spec.sample)
        self.credit = 0
        self.spans = 0      # spans opened
        self.failures = 0   # spans that could not be made (counted, never raised)

    def use(self, spec: TracingSpec) -> None:
        """A reload: the sample rate follows (0 while it says `enabled: false`); the
        exporter's settings wait for a restart."""
        self.step = share(spec.sample) if spec.enabled else 0

    def started(self, exchange: Exchange) -> None:
        self.credit += self.step
        if self.credit < WHOLE:
            return
        self.credit -= WHOLE
        try:
            self._open(exchange)
        except Exception:  # (a listener never raises into the data path)
            self.failures += 1

    def _open(self, exchange: Exchange) -> None:
        request = exchange.request
        parent = parent_of(request.header(b"traceparent")) if request is not None else None
        trace_id, parent_id = parent if parent is not None else (0, 0)
        while not trace_id:
            trace_id = self.ids.getrandbits(128)
        span_id = 0
        while not span_id:
            span_id = self.ids.getrandbits(64)
        exchange.span = OpenSpan(trace_id, span_id, parent_id)
        exchange.traceparent = b"00-%032x-%016x-01" % (trace_id, span_id)
        self.spans += 1

    def ended(self, exchange: Exchange) -> None:
        opened = exchange.span
        if opened is None:
            return
        exchange.span = None
        try:
            self.sink.end(opened, exchange)  # type: ignore[arg-type]
        except Exception:
            self.failures += 1

    async def close(self, timeout: float) -> bool:
        """Export what is queued and stop, within `timeout` seconds."""
        return await self.sink.close(timeout)
