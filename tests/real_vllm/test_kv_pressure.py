"""Real KV-cache pressure: an engine with six KV blocks (of 128 tokens) and two long sequences
has a full cache and preempts; Warden's scraper reads `vllm:kv_cache_usage_perc` and the
preemptions from its /metrics, the load-aware policy's KV rating of it falls to zero, and new
requests go to the other engine."""

from __future__ import annotations

import json

import pytest

from tests.harness import GatewayThread, http, wait_until
from tests.real_vllm.engines import Backlog, complete, discovered, started

# Two sequences at a time, 6 blocks of 128 tokens: two prompts of 340 tokens take all six
# blocks after their prefill, and the first decode step past a block's end preempts one.
# Four kept in flight (two of them waiting), so that the engine is never empty between one
# request's end and the next one's prefill.
FLAGS = ("--max-num-seqs", "2", "--num-gpu-blocks-override", "6")
SLOTS = 4
PRESSURE = {"prompt": [17] * 340, "max_tokens": 160, "ignore_eos": True, "stream": True}


@pytest.fixture(scope="module")
def engines():
    with started(*FLAGS) as pair:
        yield pair


def _admin(gateway: GatewayThread) -> dict:
    _, _, body = http("GET", f"{gateway.url}/admin/backends")
    return {b["name"]: b for b in json.loads(body)["backends"]}


def test_load_aware_routing_moves_off_an_engine_whose_kv_cache_is_full(engines):
    full, idle = engines
    gateway = GatewayThread({"backends": [{"name": "full", "url": full.url},
                                          {"name": "idle", "url": idle.url}],
                             "routing": {"policy": "load_aware"}})
    discovered(gateway)
    preempted_before = full.metric("vllm:num_preemptions_total")
    backlog = Backlog(full, PRESSURE, slots=SLOTS)
    try:
        wait_until(lambda: full.metric("vllm:kv_cache_usage_perc") >= 0.99, timeout=60,
                   what="the engine's KV cache to fill")

        def seen_full() -> bool:
            backends = _admin(gateway)
            load = backends["full"]["load"]
            return bool(load and load["kv_cache_usage"] >= 0.99
                        and backends["full"]["routing"]["scores"]["kv_cache"] == 0.0
                        and backends["idle"]["routing"]["scores"]["kv_cache"] == 1.0)

        wait_until(seen_full, timeout=30, what="the gateway to scrape the full KV cache")
        for _ in range(6):
            status, headers, body = complete(gateway.url, idle.model)
            assert status == 200, body
            assert headers["x-upstream-addr"].endswith(idle.url.rsplit(":", 1)[1])
        wait_until(lambda: full.metric("vllm:num_preemptions_total") > preempted_before,
                   timeout=60, what="the full engine to preempt a sequence")
        wait_until(lambda: (_admin(gateway)["full"]["load"] or {}).get("preemptions"),
                   timeout=30, what="the gateway to read the preemptions")
    finally:
        backlog.release()
        gateway.stop()
