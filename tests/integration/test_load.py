"""The load generator against a real `warden sim` node."""

from __future__ import annotations

import uvloop

from bench.load import run, summarize
from bench.workload import WorkloadSpec, build
from tests.harness import SimProcess


def test_load_run_reports_what_clients_saw():
    sim = SimProcess(1, "--token-delay", "0.005")
    try:
        requests = build(WorkloadSpec(rate=40, duration=1.0, stream_share=0.5, seed=3))
        outcomes, wall = uvloop.run(run(f"{sim.url(0)}/v1", requests))
        summary = summarize(outcomes, wall)
        assert summary["requests"] == len(requests) and summary["ok"] == len(requests)
        assert summary["errors"] == {}
        assert 0 < summary["ttft"]["p50"] <= summary["e2e"]["p99"]
        assert summary["itl"]["p50"] is not None and summary["output_tokens_per_s"] > 0
        assert sim.metric(0, "vllm:prefix_cache_hits_total") > 0  # shared system prompts
    finally:
        sim.stop()


def test_errors_are_counted_not_hidden():
    sim = SimProcess(1)
    try:
        requests = build(WorkloadSpec(model="not-served", rate=20, duration=0.5))
        outcomes, wall = uvloop.run(run(f"{sim.url(0)}/v1", requests))
        assert summarize(outcomes, wall)["errors"] == {"HTTP 404": len(requests)}
    finally:
        sim.stop()
