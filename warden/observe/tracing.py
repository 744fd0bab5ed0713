"""Traces, the OpenTelemetry half: the span of each sampled request, with the GenAI
semantic conventions, exported with OTLP over HTTP (protobuf) by the SDK's batch processor,
from a thread of its own, out of a bounded queue (a collector that is down or hangs loses
spans, never delays a request). Imported only when `tracing.enabled` is on: it needs the
`otel` extra. Which requests are sampled, and their ids, are the listener's
(observe/trace_listener.py, compiled with the data path).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from warden import __version__
from warden.config.observe_schema import TracingSpec
from warden.exchange import Exchange
from warden.observe.access_log import outcome
from warden.observe.trace_listener import OpenSpan, Tracing
from warden.stream.observer import Verdict

# The GenAI operation of each OpenAI endpoint (gen_ai.operation.name).
OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion",
              "/v1/embeddings": "embeddings", "/v1/responses": "chat"}
# Verdicts of an exchange that failed on the backend's side (span status ERROR, as a 5xx).
FAILED = frozenset({Verdict.UPSTREAM_ERROR, Verdict.UPSTREAM_EOF, Verdict.TIMEOUT})
SYSTEM = "vllm"
SAMPLED = TraceFlags(TraceFlags.SAMPLED)

BackendAddress = Callable[[str], tuple[str, int] | None]


class OtlpSpans:
    """The `SpanSink` of a gateway: each finished exchange's span, made once and complete
    (the SDK's `ReadableSpan`), handed to the SDK's batch processor.

    Cost rule: a sampled request pays for its span once, at its end. The SDK's tracer is not
    used: a live span (its lock, its attributes cleaned one by one as they are set, the
    context machinery) costs a sampled request more than twice what making the finished span
    does, and a span here never outlives its exchange nor has children in this process."""

    def __init__(self, processor: SpanProcessor, resource: Resource,
                 backend_address: BackendAddress) -> None:
        self.processor = processor
        self.resource = resource
        self.scope = InstrumentationScope("warden", __version__)
        self.backend_address = backend_address

    def end(self, opened: OpenSpan, exchange: Exchange) -> None:
        self.processor.on_end(self.span(opened, exchange))

    def span(self, opened: OpenSpan, exchange: Exchange) -> ReadableSpan:
        usage, reasons = outcome(exchange)
        attributes = span_attributes(exchange, usage, reasons)
        if exchange.backend is not None:
            address = self.backend_address(exchange.backend)
            if address is not None:
                attributes["server.address"], attributes["server.port"] = address
        ttft = exchange.ttft
        events = () if ttft is None else (Event(
            "gen_ai.first_token", timestamp=opened.epoch_ns(exchange.received_at + ttft)),)
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
            end_time=opened.epoch_ns(exchange.ended_at), instrumentation_scope=self.scope)

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
                    reasons: list[str]) -> dict[str, Any]:
    """The span's attributes: the GenAI conventions' (`gen_ai.*`), HTTP's, and Warden's own
    (`warden.*`). None is never an attribute value: an unknown one is left out."""
    attributes: dict[str, Any] = {
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
    # Batches of 128, not the SDK's 512: a batch is encoded in Python on the exporter's
    # thread, holding the GIL the event loop needs; a smaller one holds it for less at a time
    # (a few ms), for a few more posts a second.
    processor = BatchSpanProcessor(exporter, max_queue_size=spec.queue_size,
                                   max_export_batch_size=min(128, spec.queue_size),
                                   export_timeout_millis=spec.timeout * 1000)
    resource = Resource.create({"service.name": spec.service_name,
                                "service.version": __version__})
    return Tracing(spec, OtlpSpans(processor, resource, backend_address))
