"""Dead nodes, timeouts and retries: a request moves only if it never reached an engine."""

from __future__ import annotations

import json
from collections import Counter

import openai
import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http, stream_error, wait_until

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fleet3():
    sim = SimProcess(3)
    yield sim
    sim.stop()


def test_dead_node_traffic_goes_to_others_never_twice(fleet3):
    gw = GatewayThread({"backends": fleet3.backends_config(),
                        "routing": {"policy": "round_robin"}})
    try:
        fleet3.kill_node(0)
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        ids = []
        for i in range(30):
            raw = client.chat.completions.with_raw_response.create(
                model="sim-model", messages=MESSAGES, max_tokens=1,
                extra_headers={"X-Request-Id": f"req-{i}"})
            assert raw.headers["x-upstream-addr"] != fleet3.url(0).removeprefix("http://")
            ids.append(f"req-{i}")
        seen = fleet3.request_ids(via=1)
        assert seen[0] == []
        counts = Counter(rid for node in (1, 2) for rid in seen[node])
        assert all(counts[rid] == 1 for rid in ids), counts
        assert gw.metric("warden_upstream_retries_total") >= 1
        assert gw.in_flight() == 0
    finally:
        gw.stop()


def test_revived_node_gets_traffic_again(fleet3):
    gw = GatewayThread({"backends": fleet3.backends_config(),
                        "routing": {"policy": "round_robin"},
                        "discovery": {"unreachable_cooldown": "50ms"}})
    try:
        fleet3.kill_node(2)
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        for _ in range(6):
            client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=1)
        fleet3.revive_node(2)

        def node2_used() -> bool:
            raw = client.chat.completions.with_raw_response.create(
                model="sim-model", messages=MESSAGES, max_tokens=1)
            return raw.headers["x-upstream-addr"].endswith(str(fleet3.base_port + 2))

        wait_until(node2_used, what="traffic to reach the revived node")
    finally:
        gw.stop()


def test_whole_fleet_down_is_503_and_not_ready(fleet3):
    gw = GatewayThread({"backends": fleet3.backends_config()})
    try:
        for node in (0, 1):
            fleet3.kill_node(node, via=2)
        fleet3.kill_node(2, via=2)  # a node can kill itself: it answers, then dies
        wait_until(lambda: not _port_open(fleet3.base_port + 2), what="node 2 to die")
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="sim-model", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "no_backend_available"
        assert http("GET", f"{gw.url}/ready")[0] == 503
        assert http("GET", f"{gw.url}/health")[0] == 200
        assert gw.in_flight() == 0
    finally:
        gw.stop()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_first_byte_timeout_is_504_and_not_retried():
    sim = SimProcess(2, "--ttft", "5")
    gw = GatewayThread({"backends": sim.backends_config(),
                        "timeouts": {"first_byte": "200ms"}})
    try:
        status, _, body = http("POST", f"{gw.url}/v1/chat/completions", json.dumps(
            {"model": "sim-model", "messages": MESSAGES}).encode(),
            {"Content-Type": "application/json", "X-Request-Id": "slow-1"})
        assert status == 504
        assert json.loads(body)["error"]["code"] == "upstream_timeout"
        seen = sim.request_ids()
        assert sum(ids.count("slow-1") for ids in seen.values()) == 1
        gw.wait_idle()
    finally:
        gw.stop()
        sim.stop()


def test_idle_timeout_mid_stream_ends_with_error_event():
    sim = SimProcess(1, "--token-delay", "2")
    gw = GatewayThread({"backends": sim.backends_config(),
                        "timeouts": {"idle": "300ms", "first_byte": "5s"}})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                stream=True)
        error = stream_error(stream)
        assert "no data from the backend" in error.message
        assert gw.metric("warden_stream_verdicts_total", 'verdict="timeout"') == 1
    finally:
        gw.stop()
        sim.stop()


def test_engine_death_reaches_the_client_as_vllm_error_event_and_is_never_retried():
    """The seed's scenario: a poison request kills the engine a stream is running on."""
    sim = SimProcess(2, "--token-delay", "0.02", "--output-tokens", "500",
                     "--exit-after", "30")
    # The guard would normalize the poison away (tests/integration/test_guard.py): off here,
    # as this is about what the data path does with a request that does reach an engine.
    gw = GatewayThread({"backends": sim.backends_config(),
                        "routing": {"policy": "round_robin"}, "guard": {"mode": "off"}})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="sim-model", messages=MESSAGES, stream=True)
        node = sim.node_of(raw.headers)
        stream = raw.parse()
        next(iter(stream))
        status, _, _ = http("POST", f"{sim.url(node)}/v1/chat/completions", json.dumps(
            {"model": "sim-model", "messages": MESSAGES, "structured_outputs": {},
             "max_tokens": 1}).encode(), {"Content-Type": "application/json",
                                          "X-Request-Id": "poison-1"})
        assert status == 500
        error = stream_error(stream)
        assert "EngineCore encountered an issue" in error.message
        gw.wait_idle()
        assert gw.metric("warden_stream_verdicts_total", 'verdict="upstream_error"') == 1
        # Through the gateway, the poison is answered by the dead engine, never re-sent.
        status, _, _ = http("POST", f"{gw.url}/v1/chat/completions", json.dumps(
            {"model": "sim-model", "messages": MESSAGES, "structured_outputs": {}}).encode(),
            {"Content-Type": "application/json", "X-Request-Id": "poison-2"})
        assert status == 500
        seen = sim.request_ids(via=node)
        assert sum(ids.count("poison-2") for ids in seen.values()) == 1
    finally:
        gw.stop()
        sim.stop()


def test_backend_api_key_from_the_environment():
    """vLLM --api-key on the backend; the gateway holds the key (from the environment) and
    clients never need it."""
    sim = SimProcess(1, "--api-key", "backend-secret")
    try:
        body = json.dumps({"model": "sim-model", "messages": MESSAGES, "max_tokens": 1})
        headers = {"Content-Type": "application/json", "Authorization": "Bearer client-token"}
        assert http("POST", f"{sim.url(0)}/v1/chat/completions", body.encode(),
                    headers)[0] == 401
        gw = GatewayThread({"backends": [{"name": "a", "url": sim.url(0),
                                          "models": ["sim-model"],
                                          "api_key": "${VLLM_API_KEY}"}]},
                           environ={"VLLM_API_KEY": "backend-secret"})
        try:
            assert http("POST", f"{gw.url}/v1/chat/completions", body.encode(),
                        headers)[0] == 200
        finally:
            gw.stop()
    finally:
        sim.stop()
