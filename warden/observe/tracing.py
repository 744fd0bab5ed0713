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
sets the outcome's attributes and ends the span at the exchange's end; the SDK's batch
processor exports from a thread of its own, from a bounded queue (a collector that is down or
hangs loses spans, never delays a request). Sampling is Warden's alone: a client's sampled
flag does not force a span (the parent's trace is joined only when Warden samples).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Span, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

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

BackendAddress = Callable[[str], tuple[str, int] | None]


class Tracing:
    hears_started = True

    def __init__(self, spec: TracingSpec, provider: TracerProvider,
                 backend_address: BackendAddress) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("warden", __version__)
        self.backend_address = backend_address
        self.propagator = TraceContextTextMapPropagator()
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
        parent: Context | None = None
        request = exchange.request
        if request is not None:
            incoming = request.header(b"traceparent")
            if incoming is not None:
                parent = self.propagator.extract({"traceparent": incoming.decode("latin-1")})
        operation = OPERATIONS.get(exchange.endpoint)
        name = f"{operation} {exchange.model}" if operation and exchange.model \
            else f"{request.method if request is not None else 'POST'} {exchange.endpoint}"
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.CLIENT,
                                      start_time=_epoch_ns(exchange.received_at))
        context = span.get_span_context()
        exchange.span = span
        exchange.traceparent = b"00-%032x-%016x-01" % (context.trace_id, context.span_id)
        self.spans += 1

    def ended(self, exchange: Exchange) -> None:
        span = exchange.span
        if span is None:
            return
        exchange.span = None
        try:
            self._close(span, exchange)  # type: ignore[arg-type]
        except Exception:
            self.failures += 1

    def _close(self, span: Span, exchange: Exchange) -> None:
        usage, reasons = outcome(exchange)
        attributes = span_attributes(exchange, usage, reasons)
        if exchange.backend is not None:
            address = self.backend_address(exchange.backend)
            if address is not None:
                attributes["server.address"], attributes["server.port"] = address
        span.set_attributes(attributes)
        if exchange.ttft is not None:
            span.add_event("gen_ai.first_token",
                           timestamp=_epoch_ns(exchange.received_at + exchange.ttft))
        if exchange.status >= 500 or exchange.verdict in FAILED:
            span.set_attribute("error.type", str(exchange.status) if exchange.status >= 500
                               else str(exchange.verdict))
            span.set_status(Status(StatusCode.ERROR, exchange.error))
        span.end(end_time=_epoch_ns(exchange.ended_at))

    async def close(self, timeout: float) -> bool:
        """Export what is queued and stop, within `timeout` seconds (a collector that hangs
        is left behind: its thread is a daemon's). False: it did not finish in time."""
        import asyncio

        done = threading.Thread(target=self.provider.shutdown, name="warden-trace-close",
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


def _epoch_ns(monotonic: float) -> int:
    """A `time.monotonic()` instant as nanoseconds since the epoch (what spans carry)."""
    return time.time_ns() - time.monotonic_ns() + int(monotonic * 1e9)


def build_tracing(spec: TracingSpec, backend_address: BackendAddress,
                  exporter: SpanExporter | None = None) -> Tracing:
    """The tracer of a gateway: its provider, the batch processor (its thread, its bounded
    queue) and the OTLP/HTTP exporter to `spec.endpoint` (or `exporter`, for a test)."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=spec.endpoint, headers=dict(spec.headers),
                                    timeout=spec.timeout)
    # (No exit hook: at exit, a collector that hangs must not hold the process; the gateway
    # closes the provider itself, within a deadline.)
    provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False,
                              resource=Resource.create({"service.name": spec.service_name,
                                                        "service.version": __version__}))
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=spec.queue_size,
        max_export_batch_size=min(512, spec.queue_size),
        export_timeout_millis=spec.timeout * 1000))
    return Tracing(spec, provider, backend_address)
