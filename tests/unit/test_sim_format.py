"""The simulator's wire format against captures from real vLLM 0.32.0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


def families(text: str) -> dict[str, tuple[str, frozenset[str], tuple[str, ...]]]:
    """vllm:* families: name -> (type, extra label names, histogram buckets)."""
    out = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("vllm:") or family.name.endswith("_created"):
            continue
        labels = frozenset(k for s in family.samples for k in s.labels) - {"le"}
        buckets = tuple(dict.fromkeys(s.labels["le"] for s in family.samples
                                      if s.name.endswith("_bucket")))
        out[family.name] = (family.type, labels, buckets)
    return out


def sim_metrics(version: str, **options) -> str:
    class Clock:
        def time(self):
            return 0.0

    metrics = NodeMetrics("tiny", version, **options)
    metrics.watch(SimEngine(EngineProfile(), Clock(), metrics))
    return metrics.render().decode()


@pytest.mark.parametrize("version", ["0.11.0", "0.32.0"])
def test_metric_families_match_the_real_server(version):
    """Same family names, types, label names and buckets as the capture of that version
    (cache_config_info aside: its labels are the engine's whole config)."""
    real = families((FIXTURES / f"metrics-{version}.txt").read_text())
    ours = families(sim_metrics(version))
    assert set(ours) == set(real)
    for name, (kind, labels, buckets) in real.items():
        assert ours[name][0] == kind, name
        assert ours[name][2] == buckets, name
        if name != "vllm:cache_config_info":
            assert ours[name][1] == labels, name


def test_legacy_names_and_lora_info():
    text = sim_metrics("0.11.0", legacy_names=True, loras=("sql-lora",))
    names = families(text)
    assert "vllm:gpu_cache_usage_perc" in names and "vllm:kv_cache_usage_perc" not in names
    assert "vllm:gpu_prefix_cache_hits" in names
    assert names["vllm:lora_requests_info"][1] == {"max_lora", "running_lora_adapters",
                                                   "waiting_lora_adapters"}


def test_request_success_is_labelled_like_vllm():
    text = sim_metrics("0.11.0")
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="tiny"} 0.0' \
        in text
