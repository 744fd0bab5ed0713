"""The simulator's wire format against captures from real vLLM 0.32.0."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from warden.sim import vllm_format as fmt
from warden.sim.engine import EngineProfile, SimEngine
from warden.sim.metrics import NodeMetrics
from warden.stream.sse import SseDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"


def events(name: str) -> list[dict]:
    payloads = SseDecoder().feed((FIXTURES / name).read_bytes())
    assert payloads[-1] == b"[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def shape(event: dict) -> list:
    """Key order of the event and of its first choice (and delta): what clients may see."""
    choice = event["choices"][0] if event["choices"] else {}
    return [list(event), list(choice), list(choice.get("delta", {}))]


def test_chat_stream_matches_vllm():
    real = events("sse-chat-0.32.0.txt")
    ours = [fmt.chat_role_chunk("id", 1, "m"),
            fmt.chat_content_chunk("id", 1, "m", "x", None),
            fmt.chat_content_chunk("id", 1, "m", "x", "length"),
            fmt.usage_chunk("id", "chat.completion.chunk", 1, "m", 16, 16, "0.32.0")]
    assert [shape(e) for e in ours] == [shape(real[0]), shape(real[1]), shape(real[-2]),
                                        shape(real[-1])]


def test_completion_stream_matches_vllm():
    real = events("sse-completions-0.32.0.txt")
    ours = [fmt.completion_chunk("id", 1, "m", "x", None),
            fmt.completion_chunk("id", 1, "m", "x", "length"),
            fmt.usage_chunk("id", "text_completion", 1, "m", 6, 4, "0.32.0")]
    assert [shape(e) for e in ours] == [shape(real[0]), shape(real[-2]), shape(real[-1])]


def test_serialisation_is_compact_like_vllm():
    assert fmt.sse({"a": 1, "b": None}) == b'data: {"a":1,"b":null}\n\n'


def test_metrics_parse_with_vllm_names_and_types():
    class NoLoop:
        def time(self):
            return 0.0

    metrics = NodeMetrics("m")
    metrics.watch(SimEngine(EngineProfile(), NoLoop(), metrics))
    metrics.finished("stop", 0.5)
    families = {f.name: f.type for f in text_string_to_metric_families(
        metrics.render().decode())}
    assert families["vllm:num_requests_running"] == "gauge"
    assert families["vllm:num_requests_waiting"] == "gauge"
    assert families["vllm:kv_cache_usage_perc"] == "gauge"
    assert families["vllm:request_success"] == "counter"
    assert families["vllm:num_preemptions"] == "counter"
    assert families["vllm:time_to_first_token_seconds"] == "histogram"
    assert families["vllm:e2e_request_latency_seconds"] == "histogram"
    text = metrics.render().decode()
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 1.0' \
        in text
