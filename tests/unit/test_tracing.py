"""The tracer as a listener: its sampling, the W3C `traceparent` it reads and the one it
sets, the span it hands the SDK's processor (an in-memory exporter here; the OTLP export is
tested through the gateway, tests/integration/test_traces.py)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from warden.config.observe_schema import TracingSpec
from warden.edge.request import HttpRequest
from warden.exchange import Exchange
from warden.observe.trace_listener import Tracing, parent_of
from warden.observe.tracing import build_tracing

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def exchange(traceparent: bytes | None = None, status: int = 200) -> Exchange:
    passed = [b"traceparent", b": ", traceparent, b"\r\n"] if traceparent is not None else []
    request = HttpRequest(b"POST", b"/v1/chat/completions", {}, passed, b"{}", True,
                          "192.0.2.1", 10.0)
    made = Exchange(b"r-1", "/v1/chat/completions", "192.0.2.1", 10.0)
    made.request, made.model, made.backend, made.status = request, "m", "b0", status
    made.verdict, made.ended_at = "complete", 10.25
    return made


def tracer(sample: float = 1.0) -> tuple[Tracing, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing = build_tracing(TracingSpec(enabled=True, sample=sample),
                            lambda name: ("10.0.0.5", 8001), exporter=spans)
    tracing.sink.processor = SimpleSpanProcessor(spans)  # (exported at once, for the test)
    return tracing, spans


@pytest.mark.parametrize(("value", "parent"), [
    (f"00-{TRACE}-{SPAN}-01".encode(), (int(TRACE, 16), int(SPAN, 16))),
    (f"00-{TRACE}-{SPAN}-00".encode(), (int(TRACE, 16), int(SPAN, 16))),  # (not sampled)
    (f"01-{TRACE}-{SPAN}-01-later".encode(), (int(TRACE, 16), int(SPAN, 16))),  # (a later version)
    (f"00-{TRACE}-{SPAN}-01-extra".encode(), None),  # version 00 has nothing after
    (f"ff-{TRACE}-{SPAN}-01".encode(), None),
    (f"00-{'0' * 32}-{SPAN}-01".encode(), None),
    (f"00-{TRACE}-{'0' * 16}-01".encode(), None),
    (f"00-{TRACE.upper()}-{SPAN}-01".encode(), None),
    (b"00-zz-not-a-trace", None), (b"", None), (None, None),
])
def test_a_traceparent_is_read_as_the_w3c_says(value, parent):
    assert parent_of(value) == parent


def test_a_sampled_exchange_gets_a_span_and_its_own_traceparent():
    tracing, spans = tracer()
    made = exchange(f"00-{TRACE}-{SPAN}-01".encode(), status=503)
    tracing.started(made)
    parent = made.traceparent.decode()
    assert parent.startswith(f"00-{TRACE}-") and parent.endswith("-01") and len(parent) == 55
    tracing.ended(made)
    assert made.span is None
    (span,) = spans.get_finished_spans()
    assert f"{span.context.span_id:016x}" == parent[36:52]
    assert span.parent.span_id == int(SPAN, 16) and span.parent.is_remote
    assert span.name == "chat m" and span.end_time - span.start_time == 250_000_000
    assert span.attributes["server.address"] == "10.0.0.5"
    assert span.attributes["error.type"] == "503"
    assert span.status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in span.attributes  # (unknown: left out)


def test_sampling_counts_and_a_reload_changes_it():
    tracing, spans = tracer(sample=0.25)
    for _ in range(8):
        made = exchange()
        tracing.started(made)
        tracing.ended(made)
    assert len(spans.get_finished_spans()) == 2 and tracing.spans == 2
    tracing.use(TracingSpec(enabled=False, sample=1.0))
    made = exchange(f"00-{TRACE}-{SPAN}-01".encode())
    tracing.started(made)
    assert made.traceparent == b"" and made.span is None  # (the client's goes on as it is)


def test_a_span_that_cannot_be_made_is_counted_not_raised():
    class Broken(SimpleSpanProcessor):
        def on_end(self, span) -> None:
            raise RuntimeError("what a bug would do")

    tracing, spans = tracer()
    tracing.sink.processor = Broken(spans)
    made = exchange()
    tracing.started(made)
    tracing.ended(made)
    assert tracing.failures == 1 and made.span is None


def test_tracing_without_the_extra_and_a_bad_level_are_config_errors(monkeypatch):
    from warden.config import observe_schema
    from warden.settings import ConfigError, parse_settings

    backends = [{"name": "b", "url": "http://127.0.0.1:9"}]
    with pytest.raises(ConfigError) as wrong:
        parse_settings({"backends": backends, "logging": {"level": "loud"},
                        "tracing": {"endpoint": "collector:4318"}}, {})
    assert any("logging.level" in p and "DEBUG" in p for p in wrong.value.problems)
    assert any("tracing.endpoint" in p and "not a URL" in p for p in wrong.value.problems)
    monkeypatch.setattr(observe_schema.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as missing:
        parse_settings({"backends": backends, "tracing": {"enabled": True}}, {})
    assert any("pip install 'warden[otel]'" in p for p in missing.value.problems)
    parse_settings({"backends": backends, "tracing": {"enabled": False}}, {})  # (off: fine)


def test_a_gateway_without_tracing_never_imports_opentelemetry():
    import subprocess
    import sys

    code = ("import sys\n"
            "from warden.app import build_app\n"
            "from warden.compiled import describe\n"
            "from warden.settings import parse_settings\n"
            "describe()\n"
            "build_app(parse_settings({'backends': [{'name': 'b', 'url': 'http://127.0.0.1:9'}],"
            " 'recorder': {'enabled': False},"
            " 'logging': {'access_log': {'enabled': True}}}, {}))\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
