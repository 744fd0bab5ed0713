"""Engine load from /metrics text: real vLLM captures, older names, several engines, rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.fleet.signals import engine_load, read_families
from warden.sim.metrics import NodeMetrics

FIXTURES = Path(__file__).parent.parent / "fixtures" / "vllm"


@pytest.mark.parametrize("version", ["0.11.0", "0.32.0"])
def test_real_vllm_metrics_give_every_signal(version):
    text = (FIXTURES / f"metrics-{version}.txt").read_text()
    load = engine_load(text, 1.0, 0, None)
    assert (load.kv_usage, load.waiting, load.running) == (0.0, 0.0, 0.0)
    assert load.counters.prefix_queries == 98.0 and load.counters.activity > 0
    assert load.preemptions is None      # a rate needs two scrapes
    assert load.missing() == ()


def test_older_vllm_names_are_read():
    """Before vLLM 0.10: gpu_cache_usage_perc and gpu_prefix_cache_* (the sim's legacy
    names, as real servers of that time export them)."""
    metrics = NodeMetrics("m", "0.9.2", legacy_names=True)
    text = metrics.render().decode()
    assert "vllm:gpu_cache_usage_perc" in text and "vllm:kv_cache_usage_perc" not in text
    load = engine_load(text, 1.0, 0, None)
    assert load.kv_usage == 0.0 and load.counters.prefix_queries == 0.0


TWO_ENGINES = """\
# HELP vllm:kv_cache_usage_perc KV-cache usage.
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.25
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 1.0
vllm:num_requests_running{engine="0",model_name="m"} 8.0 1700000000000
vllm:num_requests_running{engine="1",model_name="m"} 4.0
vllm:num_preemptions_total{engine="0",model_name="m"} %(preempted)s
vllm:prefix_cache_hits_total{engine="0",model_name="m"} %(hits)s
vllm:prefix_cache_queries_total{engine="0",model_name="m"} %(queries)s
vllm:prompt_tokens_total{engine="0",model_name="m"} %(prompt)s
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 99.0
"""


def two_engines(preempted=0, hits=0, queries=0, prompt=100) -> str:
    return TWO_ENGINES % {"preempted": preempted, "hits": hits, "queries": queries,
                          "prompt": prompt}


def test_engines_are_summed_and_their_cache_usage_averaged():
    load = engine_load(two_engines(), 1.0, 2, None)
    assert load.kv_usage == 0.375 and load.waiting == 4.0 and load.running == 12.0
    assert load.in_flight_at_scrape == 2
    # A family whose name only starts like a wanted one is not mistaken for it.
    assert "vllm:num_requests_waiting_by_reason" not in read_families(two_engines())


def test_counters_become_rates_between_scrapes():
    first = engine_load(two_engines(preempted=5, hits=100, queries=400, prompt=400), 1.0, 0,
                        None)
    second = engine_load(two_engines(preempted=7, hits=400, queries=800, prompt=800), 2.0, 0,
                         first)
    assert second.preemptions == 2.0
    assert second.prefix_hit_rate == 0.75   # 300 of the 400 tokens queried since
    assert not second.restarted


def test_counters_going_backwards_mean_a_restart():
    before = engine_load(two_engines(preempted=7, queries=800, prompt=5000), 1.0, 0, None)
    after = engine_load(two_engines(preempted=0, queries=10, prompt=10), 2.0, 0, before)
    assert after.restarted and after.preemptions is None


def test_a_server_without_a_signal_says_so():
    load = engine_load("vllm:num_requests_running{engine=\"0\"} 2\n", 1.0, 0, None)
    assert load.running == 2.0 and load.kv_usage is None and load.waiting is None
    assert load.missing() == ("kv_cache", "queue", "preemptions")
    assert engine_load("garbage\nvllm:kv_cache_usage_perc{} oops\n", 1.0, 0, None) \
        .missing() == ("kv_cache", "queue", "running", "preemptions")
