"""The load generator's workloads (pure)."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

from bench.workload import WorkloadSpec, build, load_trace


def test_same_seed_same_workload():
    spec = WorkloadSpec(rate=50, duration=5, seed=7)
    assert build(spec) == build(spec)
    assert build(spec) != build(WorkloadSpec(rate=50, duration=5, seed=8))


def test_poisson_rate_and_bursty_variance():
    poisson = [r.at for r in build(WorkloadSpec(rate=100, duration=50, burstiness=1.0))]
    bursty = [r.at for r in build(WorkloadSpec(rate=100, duration=50, burstiness=3.0))]
    assert 4500 < len(poisson) < 5500 and 4000 < len(bursty) < 6000

    def cv(times: list[float]) -> float:
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return statistics.pstdev(gaps) / statistics.mean(gaps)

    assert 0.9 < cv(poisson) < 1.1 and cv(bursty) > 2.0


def test_shared_prefixes_sessions_and_stream_share():
    spec = WorkloadSpec(rate=100, duration=20, shared_prefix_share=0.5, system_prompts=3,
                        session_share=0.3, stream_share=0.25)
    requests = build(spec)
    systems = {r.body["messages"][0]["content"] for r in requests
               if r.body["messages"][0]["role"] == "system"}
    with_system = sum(r.body["messages"][0]["role"] == "system" for r in requests)
    assert len(systems) == 3 and 0.35 < with_system / len(requests) < 0.65
    turns = [r for r in requests if r.session is not None and len(r.body["messages"]) > 2]
    assert turns and all(r.body["messages"][-2]["role"] == "assistant" for r in turns)
    streams = sum(r.body.get("stream") is True for r in requests) / len(requests)
    assert 0.2 < streams < 0.3
    lengths = sorted(r.body["max_tokens"] for r in requests)
    assert lengths[-1] > 3 * lengths[len(lengths) // 2]  # a long tail


def test_trace_replay_keeps_relative_timing(tmp_path: Path):
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in (
        {"timestamp": 1000.5, "body": {"model": "a", "messages": []}},
        {"timestamp": 1000.0, "body": {"model": "a", "messages": []}})) + "\n")
    requests = load_trace(path, model="b")
    assert [r.at for r in requests] == [0.0, 0.5]
    assert {r.body["model"] for r in requests} == {"b"}
