"""Traces: real OTLP from the real exporter, decoded by a receiver in the test; the span's
GenAI attributes, its parent from the client's `traceparent`, the `traceparent` the backend
got; and a collector that hangs or is absent costs the requests nothing."""

from __future__ import annotations

import json
import time

import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, free_port_block, http
from tests.otlp import HangingCollector, OtlpReceiver

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
MESSAGES = [{"role": "user", "content": "Hello"}]
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2


@pytest.fixture(autouse=True)
def quick_exports(monkeypatch):
    """The batch processor exports every 100 ms (its default is 5 s)."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


@pytest.fixture
def sim():
    fleet = SimProcess(1)
    yield fleet
    fleet.stop()


@pytest.fixture
def receiver():
    collector = OtlpReceiver()
    yield collector
    collector.stop()


def traced(sim: SimProcess, endpoint: str, **tracing) -> GatewayThread:
    return GatewayThread({"backends": sim.backends_config(),
                          "tracing": {"enabled": True, "endpoint": endpoint,
                                      "headers": {"x-collector-key": "k1"}, **tracing}})


def sim_traceparents(sim: SimProcess) -> list[str]:
    _, _, body = http("GET", f"{sim.url(0)}/sim/requests")
    return json.loads(body)["nodes"][0]["traceparents"]


def test_a_span_per_request_with_the_genai_attributes_and_the_clients_parent(sim, receiver):
    gw = traced(sim, receiver.url, service_name="gateway-a")
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                               max_tokens=5,
                                               extra_headers={"traceparent": CLIENT_PARENT})
        stream = client.chat.completions.create(
            model="sim-model", messages=MESSAGES, stream=True,
            stream_options={"include_usage": True})
        assert [c for c in stream][-1].usage.completion_tokens == 16
        spans = receiver.wait_for(2)
    finally:
        gw.stop()
    plain, streamed = sorted(spans, key=lambda s: s.start)
    # The plain request's span is the client's span's child; the stream's starts a trace.
    assert (plain.trace_id, plain.parent_id) == (CLIENT_TRACE, CLIENT_SPAN)
    assert streamed.trace_id != CLIENT_TRACE and streamed.parent_id == ""
    for span in spans:
        assert span.name == "chat sim-model" and span.kind == SPAN_KIND_CLIENT
        attributes = span.attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "sim-model"
        assert attributes["gen_ai.system"] == attributes["gen_ai.provider.name"] == "vllm"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["server.port"] == sim.base_port
        assert attributes["http.response.status_code"] == 200
        assert attributes["warden.backend"] == "node-0"
        assert span.resource["service.name"] == "gateway-a"
        assert 0 < span.end - span.start < 10e9
        assert abs(span.start / 1e9 - time.time()) < 60  # (the wall clock, not monotonic)
    assert plain.attributes["gen_ai.usage.output_tokens"] == reply.usage.completion_tokens
    assert plain.attributes["gen_ai.usage.input_tokens"] == reply.usage.prompt_tokens
    assert plain.attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert plain.attributes["warden.stream"] is False
    assert streamed.attributes["gen_ai.usage.output_tokens"] == 16
    assert streamed.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert streamed.attributes["warden.verdict"] == "complete"
    assert [name for name, _ in streamed.events] == ["gen_ai.first_token"]
    assert streamed.start < streamed.events[0][1] <= streamed.end
    # The backend got each span's own traceparent (vLLM's spans become its children), the
    # client's replaced.
    assert sim_traceparents(sim) == [plain.traceparent, streamed.traceparent]
    assert all(h.get("x-collector-key") == "k1" for h in receiver.headers)


def test_unsampled_requests_pass_the_clients_traceparent_and_bad_ones_are_ignored(
        sim, receiver):
    gw = traced(sim, receiver.url, sample=0.5)
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
        for parent in (CLIENT_PARENT, "00-zz-not-a-trace", CLIENT_PARENT):
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=2,
                                      extra_headers={"traceparent": parent})
        http("POST", f"{sim.url(0)}/sim/fault?node=0&mode=errors&value=1")
        with pytest.raises(Exception, match="500"):
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=2)
        spans = receiver.wait_for(2)
        # A reload turns the sampling down to nothing: no more spans, the client's header
        # goes on untouched.
        assert gw.reload({"backends": sim.backends_config(),
                          "tracing": {"enabled": True, "endpoint": receiver.url,
                                      "headers": {"x-collector-key": "k1"}, "sample": 0}}) == []
        for _ in range(4):
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=2,
                                      extra_headers={"traceparent": CLIENT_PARENT})
        assert gw.gateway.parts.tracing.spans == 2
    finally:
        gw.stop()
    # Sampled: the 2nd and 4th (every other request, counted).
    bad_parent, failed = sorted(spans, key=lambda s: s.start)
    assert len(spans) == 2
    assert bad_parent.parent_id == "" and bad_parent.trace_id != CLIENT_TRACE
    assert bad_parent.name == "text_completion sim-model"
    assert failed.status == STATUS_ERROR and failed.attributes["error.type"] == "500"
    assert failed.attributes["http.response.status_code"] == 500
    got = sim_traceparents(sim)
    assert got[0] == got[2] == CLIENT_PARENT  # (untouched: not sampled)
    assert got[1] == bad_parent.traceparent  # (a malformed one is replaced by the span's)
    assert got[3] == failed.traceparent
    assert got[4:] == [CLIENT_PARENT] * 4


@pytest.mark.parametrize("collector", ["hanging", "absent"])
def test_a_collector_that_hangs_or_is_absent_costs_the_requests_nothing(sim, collector):
    hanging = HangingCollector() if collector == "hanging" else None
    endpoint = hanging.url if hanging is not None else \
        f"http://127.0.0.1:{free_port_block(1)}/v1/traces"
    gw = traced(sim, endpoint, timeout="1s", queue_size=64)
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
        slowest = 0.0
        for _ in range(300):  # (more spans than the queue holds: the rest are dropped)
            started = time.monotonic()
            client.completions.create(model="sim-model", prompt="Hi", max_tokens=2)
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 1.0, slowest
        tracer = gw.gateway.parts.tracing
        assert tracer is not None and tracer.spans == 300 and tracer.failures == 0
        assert hanging is None or hanging.accepted  # (an export was tried, and hangs)
        started = time.monotonic()
        gw.call(lambda: gw.gateway.stop(grace=0))
        assert time.monotonic() - started < 5.0  # (the export is given 2 s, then left)
    finally:
        gw.stop(gateway_stopped=True)
        if hanging is not None:
            hanging.stop()
