"""Traces: an OpenTelemetry span per sampled request, with the GenAI semantic conventions,
exported with OTLP over HTTP (protobuf). Imported only when `tracing.enabled` is on: it needs
the `otel` extra.

Shape: an `ExchangeListener`. `started` (before the request's first byte goes upstream)
decides by counting whether the request is sampled (an addition and a comparison for one
that is not, as the access log), and for one that is opens its span: its parent is the
client's `traceparent` when it sent a valid one, its start the exchange's arrival. The
exchange then carries the span's own `traceparent`, which the forwarder sends upstream in
place of the client's (proxy/headers.py): vLLM's spans (`--otlp-traces-endpoint`) become the
span's children. An unsampled request's headers are left as the client sent them. `ended`
makes the span, complete, at the exchange's end (the SDK's `ReadableSpan`, with the outcome's
attributes) and hands it to the SDK's batch processor, which exports from a thread of its
own, from a bounded queue (a collector that is down or hangs loses spans, never delays a
request). Sampling is Warden's alone: a client's sampled flag does not force a span (the
parent's trace is joined only when Warden samples).

Cost rule: a sampled request pays for its span once, at its end. The SDK's tracer is not used:
a live span (its lock, its attributes cleaned one by one as they are set, the context
machinery) costs a sampled request more than twice what making the finished span does, and a
span here never outlives its exchange nor has children in this process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from warden import __version__
from warden.config.observe_schema import TracingSpec
from warden.exchange import Exchange
from warden.observe.access_log import WHOLE, outcome, share
from warden.stream.observer import Verdict

log = logging.getLogger("warden.tracing")

# The GenAI operation of each OpenAI endpoint (gen_ai.operation.name).
OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion",
              "/v1/embeddings": "embeddings", "/v1/responses": "chat"}
# Verdicts of an exchange that failed on the backend's side (span status ERROR, as a 5xx).
FAILED = frozenset({Verdict.UPSTREAM_ERROR, Verdict.UPSTREAM_EOF, Verdict.TIMEOUT})
SYSTEM = "vllm"
# W3C Trace Context: version-traceid-parentid-flags (version 00 has nothing after; a later
# version may add fields, and is read as 00 is). Lower-case hex only.
TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
SAMPLED = TraceFlags(TraceFlags.SAMPLED)

BackendAddress = Callable[[str], tuple[str, int] | None]


class OpenSpan:
    """A sampled exchange's span between its start and its end: its ids, and the offset
    from the monotonic clock to the epoch, read once (so its times are exact relative to one
    another). The SDK's span object is made once, complete, at the end."""

    __slots__ = ("epoch_offset", "parent_id", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int, parent_id: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.epoch_offset = time.time_ns() - time.monotonic_ns()

    def epoch_ns(self, monotonic: float) -> int:
        """A `time.monotonic()` instant as nanoseconds since the epoch (what spans carry)."""
        return self.epoch_offset + int(monotonic * 1e9)


def parent_of(traceparent: bytes | None) -> tuple[int, int] | None:
    """(trace id, span id) of a valid W3C `traceparent`, else None (ignored, as the
    specification says of an invalid one)."""
    if traceparent is None:
        return None
    match = TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace, span, _, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    return (trace_id, span_id) if trace_id and span_id else None


class Tracing:
    hears_started = True

    def __init__(self, spec: TracingSpec, processor: SpanProcessor, resource: Resource,
                 backend_address: BackendAddress) -> None:
        self.processor = processor
        self.resource = resource
        self.scope = InstrumentationScope("warden", __version__)
        self.backend_address = backend_address
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
            self.processor.on_end(self._span(opened, exchange))  # type: ignore[arg-type]
        except Exception:
            self.failures += 1

    def _span(self, opened: OpenSpan, exchange: Exchange) -> ReadableSpan:
        usage, reasons = outcome(exchange)
        attributes = span_attributes(exchange, usage, reasons)
        if exchange.backend is not None:
            address = self.backend_address(exchange.backend)
            if address is not None:
                attributes["server.address"], attributes["server.port"] = address
        events = () if exchange.ttft is None else (Event(
            "gen_ai.first_token", timestamp=opened.epoch_ns(exchange.received_at + exchange.ttft)),)
        status = Status(StatusCode.UNSET)
        if exchange.status >= 500 or exchange.verdict in FAILED:
            attributes["error.type"] = str(exchange.status) if exchange.status >= 500 \
                else str(exchange.verdict)
            status = Status(StatusCode.ERROR, exchange.error)
        operation = OPERATIONS.get(exchange.endpoint)
        request = exchange.request
        name = f"{operation} {exchange.model}" if operation and exchange.model \
            else f"{request.method if request is not None else 'POST'} {exchange.endpoint}"
        trace_id = opened.trace_id
        parent = SpanContext(trace_id, opened.parent_id, True, SAMPLED) \
            if opened.parent_id else None
        return ReadableSpan(
            name, SpanContext(trace_id, opened.span_id, False, SAMPLED), parent,
            self.resource, attributes, events, kind=SpanKind.CLIENT, status=status,
            start_time=opened.epoch_ns(exchange.received_at),
            end_time=opened.epoch_ns(exchange.ended_at),
            instrumentation_scope=self.scope)

    async def close(self, timeout: float) -> bool:
        """Export what is queued and stop, within `timeout` seconds (a collector that hangs
        is left behind: its thread is a daemon's). False: it did not finish in time."""
        done = threading.Thread(target=self.processor.shutdown, name="warden-trace-close",
                                daemon=True)
        done.start()
        deadline = time.monotonic() + timeout
        while done.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not done.is_alive()


def span_attributes(exchange: Exchange, usage: dict | None,
                    reasons: list[str]) -> dict[str, object]:
    """The span's attributes: the GenAI conventions' (`gen_ai.*`), HTTP's, and Warden's own
    (`warden.*`). None is never an attribute value: an unknown one is left out."""
    attributes: dict[str, object] = {
        "gen_ai.system": SYSTEM, "gen_ai.provider.name": SYSTEM,
        "url.path": exchange.endpoint, "http.response.status_code": exchange.status,
        "client.address": exchange.client_ip,
        "warden.request_id": exchange.request_id.decode("ascii", "replace"),
        "warden.stream": exchange.stream, "warden.attempts": len(exchange.attempts),
    }
    operation = OPERATIONS.get(exchange.endpoint)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    optional = {"gen_ai.request.model": exchange.model, "warden.backend": exchange.backend,
                "warden.verdict": exchange.verdict, "warden.tenant": exchange.tenant,
                "warden.key_id": exchange.principal}
    for key, value in optional.items():
        if value is not None:
            attributes[key] = value
    if usage is not None:
        for key, name in (("gen_ai.usage.input_tokens", "prompt_tokens"),
                          ("gen_ai.usage.output_tokens", "completion_tokens")):
            if type(usage.get(name)) is int:
                attributes[key] = usage[name]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    if exchange.ttft is not None:
        attributes["warden.ttft_s"] = exchange.ttft
    return attributes


def build_tracing(spec: TracingSpec, backend_address: BackendAddress,
                  exporter: SpanExporter | None = None) -> Tracing:
    """The tracer of a gateway: the SDK's batch processor (its thread, its bounded queue) and
    the OTLP/HTTP exporter to `spec.endpoint` (or `exporter`, for a test)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=spec.endpoint, headers=dict(spec.headers),
                                    timeout=spec.timeout)
    processor = BatchSpanProcessor(exporter, max_queue_size=spec.queue_size,
                                   max_export_batch_size=min(512, spec.queue_size),
                                   export_timeout_millis=spec.timeout * 1000)
    resource = Resource.create({"service.name": spec.service_name,
                                "service.version": __version__})
    return Tracing(spec, processor, resource, backend_address)
