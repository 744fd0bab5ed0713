"""Real queueing: an engine full to its queue answers 503 and Warden passes that on as it came
(without retrying it elsewhere: it was sent); load-aware routing sees the queue in the engine's
/metrics and sends new requests to the idle engine instead."""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.harness import GatewayThread, http, wait_until
from tests.real_vllm.engines import Backlog, Engine, complete, discovered, started

# One sequence at a time and one more queued (vLLM counts both against the queue's limit):
# a third request is refused with 503.
FLAGS = ("--max-num-seqs", "1", "--max-num-queued-reqs", "2")
# A tiny model decodes ~150 tokens/s here: one of these lasts ~3 s.
LONG = {"prompt": "Once", "max_tokens": 480, "ignore_eos": True, "stream": True}


@pytest.fixture(scope="module")
def engines():
    with started(*FLAGS) as pair:
        yield pair


def _full(engine: Engine) -> bool:
    return (engine.metric("vllm:num_requests_running") == 1
            and engine.metric("vllm:num_requests_waiting") == 1)


@contextlib.contextmanager
def one_busy(engines: list[Engine], policy: str):
    """A gateway over both engines (the busy one listed first, so that a tie would pick it)
    while the first is kept full: (gateway, busy, idle)."""
    busy, idle = engines
    gateway = GatewayThread({"backends": [{"name": "busy", "url": busy.url},
                                          {"name": "idle", "url": idle.url}],
                             "routing": {"policy": policy}})
    discovered(gateway)
    backlog = Backlog(busy, LONG)
    try:
        wait_until(lambda: _full(busy), timeout=60, what="the busy engine's queue to fill")
        yield gateway, busy, idle
    finally:
        backlog.release()
        gateway.stop()


def test_a_full_engine_503_passes_through_and_is_not_retried(engines):
    with one_busy(engines, "round_robin") as (gateway, busy, _):
        status, _, expected = complete(busy.url, busy.model)
        assert status == 503, expected
        assert b"busy" in expected
        answers = [complete(gateway.url, busy.model) for _ in range(4)]
        refused = [a for a in answers if a[0] == 503]
        assert refused, "round robin sent nothing to the full engine"
        for _, headers, body in refused:
            assert body == expected  # vLLM's own envelope, unchanged
            assert headers["x-upstream-status"] == "503"
            assert headers["x-upstream-addr"].endswith(busy.url.rsplit(":", 1)[1])
        assert all(a[0] == 200 for a in answers if a not in refused)
        assert gateway.metric("warden_upstream_retries_total") == 0


def test_load_aware_routing_sends_work_to_the_idle_engine(engines):
    with one_busy(engines, "load_aware") as (gateway, _, idle):
        def seen_waiting() -> bool:
            _, _, body = http("GET", f"{gateway.url}/admin/backends")
            load = {b["name"]: b["load"] for b in json.loads(body)["backends"]}
            return bool(load["busy"] and load["busy"]["waiting"] == 1)

        wait_until(seen_waiting, timeout=30, what="the gateway to scrape the queue")
        for _ in range(6):
            status, headers, body = complete(gateway.url, idle.model)
            assert status == 200, body
            assert headers["x-upstream-addr"].endswith(idle.url.rsplit(":", 1)[1])
