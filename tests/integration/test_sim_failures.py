"""`warden sim` fails as vLLM does: the seed's crash and its timeline, and injected faults."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from tests.harness import SimProcess, http, wait_until

SEED_POISON = {"model": "sim-model", "messages": [{"role": "user", "content": "x"}],
               "structured_outputs": {}}
JSON = {"Content-Type": "application/json"}


def chat(url: str, body: dict, timeout: float = 10.0):
    return http("POST", f"{url}/v1/chat/completions", json.dumps(body).encode(), JSON, timeout)


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def open_stream(url: str) -> tuple[threading.Thread, list]:
    """A slow stream read in the background; the list gets its whole body."""
    out: list = []

    def read() -> None:
        body = {"model": "sim-model", "stream": True, "messages": [{"role": "user",
                                                                   "content": "long"}]}
        out.append(chat(url, body, timeout=30)[2])

    thread = threading.Thread(target=read)
    thread.start()
    return thread, out


def test_the_seed_request_kills_a_0_11_engine_like_vllm():
    sim = SimProcess(1, "--token-delay", "0.05", "--output-tokens", "400",
                     "--exit-after", "0.5", "--restart-after", "0.5")
    try:
        url = sim.url(0)
        thread, streamed = open_stream(url)
        wait_until(lambda: sim.metric(0, "vllm:generation_tokens_total") >= 2,
                   what="a stream under way")
        status, _, body = chat(url, SEED_POISON)
        assert status == 500
        assert json.loads(body)["error"]["message"].startswith("EngineCore encountered an issue")
        thread.join(10)
        # The stream in flight ends with vLLM's error event, then [DONE].
        assert streamed[0].endswith(b"data: [DONE]\n\n")
        assert b'"code":500' in streamed[0].split(b"data: ")[-2]
        assert http("GET", f"{url}/health")[0] == 503
        assert chat(url, {"model": "sim-model", "messages": [{"role": "user",
                                                              "content": "hi"}]})[0] == 500
        wait_until(lambda: refused(sim.base_port), what="the API server to exit")
        wait_until(lambda: not refused(sim.base_port), what="the supervisor's restart")
        assert http("GET", f"{url}/health")[0] == 200
        assert sim.metric(0, "vllm:request_success_total") == 0  # counters reset
        assert chat(url, {"model": "sim-model", "max_tokens": 2,
                          "messages": [{"role": "user", "content": "hi"}]})[0] == 200
    finally:
        sim.stop()


@pytest.mark.parametrize(("body", "kills"), [
    ({"structured_outputs": {"json_object": False}}, True),
    ({"structured_outputs": {"json": ""}}, True),
    ({"structured_outputs": {}}, False),                       # fixed by 0.24
    ({"structured_outputs": {"json": {"type": "object"}}}, False),
])
def test_0_24_dies_on_two_requests_only_and_refuses_connections(body, kills):
    sim = SimProcess(1, "--vllm-version", "0.24.0", "--exit-after", "5")
    try:
        status, _, _ = chat(sim.url(0), {"model": "sim-model", "messages": [
            {"role": "user", "content": "x"}], **body})
        assert (status == 500) is kills
        assert refused(sim.base_port) is kills  # 0.24 stops accepting at once
    finally:
        sim.stop()


def test_crash_triggers_can_be_turned_off():
    sim = SimProcess(1, "--no-crash-triggers")
    try:
        assert chat(sim.url(0), SEED_POISON)[0] == 200
    finally:
        sim.stop()


def test_injected_faults_and_recovery():
    sim = SimProcess(2)
    try:
        url, control = sim.url(0), sim.url(1)
        hi = {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]}

        def fault(mode: str, value: str = "0") -> None:
            status, _, _ = http("POST", f"{control}/sim/fault?node=0&mode={mode}&value={value}")
            assert status == 200

        fault("errors", "2")
        assert [chat(url, hi)[0] for _ in range(3)] == [500, 500, 200]
        fault("hang")
        with pytest.raises(TimeoutError):
            chat(url, hi, timeout=0.5)
        assert http("GET", f"{url}/health")[0] == 200  # a hung engine still says healthy
        fault("recover")
        assert chat(url, hi)[0] == 200
        fault("refuse")
        assert refused(sim.base_port)
        fault("recover")
        assert chat(url, hi)[0] == 200
        assert http("POST", f"{control}/sim/fault?node=0&mode=explode")[0] == 400
    finally:
        sim.stop()
