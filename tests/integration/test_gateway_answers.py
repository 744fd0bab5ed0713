"""What a client is told in the cases a new user meets: a model whose backend is down since the
start is not a typo (503, not 404); every answer carries an X-Request-Id; a client that left
before the answer is counted and recorded as 499; the simulator answers a malformed
/detokenize as vLLM does."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from tests.harness import GatewayThread, SimProcess, http, wait_until
from warden.audit.reader import read_records, record_files, requests

JSON = {"Content-Type": "application/json"}


def _complete(url: str, model: str) -> tuple[int, dict]:
    status, _, body = http("POST", f"{url}/v1/completions", json.dumps(
        {"model": model, "prompt": "hi", "max_tokens": 2}).encode(), JSON)
    return status, json.loads(body)


def test_a_model_whose_backends_are_not_known_yet_is_503_then_served():
    up = SimProcess(1)
    others = SimProcess(2, "--model", "other-model")
    others.kill_node(1, via=0)  # down before the gateway starts: its models never learned
    gw = GatewayThread({"backends": [{"name": "up", "url": up.url(0)},
                                     {"name": "down", "url": others.url(1)}],
                        "discovery": {"interval": "200ms"}})
    try:
        assert _complete(gw.url, "sim-model")[0] == 200
        status, body = _complete(gw.url, "other-model")
        assert status == 503, body
        assert body["error"]["code"] == "no_backend_available"
        assert "the models of 1 of 2 backends are not known yet" in body["error"]["message"]
        others.revive_node(1, via=0)
        wait_until(lambda: _complete(gw.url, "other-model")[0] == 200,
                   what="the revived backend's model to be served")
        status, body = _complete(gw.url, "no-such-model")  # every backend's models known
        assert status == 404 and body["error"]["code"] == "model_not_found"
    finally:
        gw.stop()
        up.stop()
        others.stop()


def test_a_typo_is_404_when_the_down_backend_declares_its_models():
    others = SimProcess(2)
    others.kill_node(1, via=0)
    gw = GatewayThread({"backends": [{"name": "a", "url": others.url(0)},
                                     {"name": "b", "url": others.url(1), "models": ["x"]}]})
    try:
        status, body = _complete(gw.url, "sim-modle")
        assert status == 404 and body["error"]["code"] == "model_not_found"
    finally:
        gw.stop()
        others.stop()


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/models", 200), ("GET", "/health", 200), ("GET", "/ready", 200),
    ("GET", "/version", 200), ("GET", "/metrics", 200), ("GET", "/admin/backends", 200),
    ("GET", "/admin/quarantine", 200), ("GET", "/nowhere", 404), ("POST", "/health", 405),
    ("POST", "/admin/backends/nobody/drain", 404), ("POST", "/admin/quarantine/lift", 400),
])
def test_every_answer_carries_a_request_id(gateway, method, path, status):
    body = b"{}" if method == "POST" else None
    got, headers, _ = http(method, f"{gateway.url}{path}", body, JSON)
    assert got == status
    assert headers["x-request-id"]
    _, echoed, _ = http(method, f"{gateway.url}{path}", body,
                        {**JSON, "X-Request-Id": "mine-42"})
    assert echoed["x-request-id"] == "mine-42"


def test_a_client_that_leaves_before_the_answer_is_499():
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config()})
    try:
        assert http("POST", f"{sim.url(0)}/sim/fault?node=0&mode=hang")[0] == 200
        body = json.dumps({"model": "sim-model", "prompt": "hi"}).encode()
        with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: leaver\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
            wait_until(lambda: gw.in_flight() == 1, what="the request to be in flight")
            # Gone, not half-closed (which gets its answer): the close resets the connection.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_until(lambda: gw.in_flight() == 0, what="the gateway to see the client leave")
        assert gw.metric("warden_requests_total", 'status="499"') == 1
        assert gw.metric("warden_requests_total", 'status="0"') == 0
        directory = gw.settings.recorder.dir

        def ended() -> dict | None:
            return next((r.end for r in requests(read_records(record_files(directory)))
                         if r.id == "leaver" and r.end is not None), None)

        end = wait_until(ended, what="the end record")
        assert end["status"] == 499 and end["verdict"] == "client_abort"
    finally:
        gw.stop()
        sim.stop()


@pytest.mark.parametrize(("tokens", "error_type", "loc"), [
    (5, "list_type", "('body', 'tokens')"),
    (["a"], "int_parsing", "('body', 'tokens', 0)"),
    (None, "list_type", "('body', 'tokens')"),
])
def test_sim_detokenize_refuses_what_vllm_refuses(fleet, tokens, error_type, loc):
    status, _, body = http("POST", f"{fleet.url(0)}/detokenize", json.dumps(
        {"model": "sim-model", "tokens": tokens}).encode(), JSON)
    assert status == 400
    error = json.loads(body)["error"]
    assert error["type"] == "Bad Request" and error["code"] == 400
    assert f"'type': '{error_type}'" in error["message"] and loc in error["message"]


def test_sim_detokenize_takes_token_ids_as_vllm_does(fleet):
    status, _, body = http("POST", f"{fleet.url(0)}/detokenize", json.dumps(
        {"model": "sim-model", "tokens": [1, "2"]}).encode(), JSON)
    assert status == 200 and json.loads(body) == {"prompt": "t1 t2"}


def test_a_stream_asked_for_as_vllm_reads_it_is_relayed_as_a_stream(tmp_path):
    """vLLM streams `"stream": "true"` (pydantic's lax mode); with the schema check off the
    gateway must see a stream too: its events observed, its verdict and record a stream's."""
    sim = SimProcess(1)
    gw = GatewayThread({"backends": sim.backends_config(),
                        "guard": {"validation": {"enabled": False}},
                        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms"}})
    try:
        body = {"model": "sim-model", "stream": "true",
                "messages": [{"role": "user", "content": "hi"}]}
        status, headers, answer = http("POST", f"{gw.url}/v1/chat/completions",
                                       json.dumps(body).encode(),
                                       {"Content-Type": "application/json"})
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        assert answer.rstrip().endswith(b"data: [DONE]")
        assert gw.metric("warden_stream_verdicts_total", 'verdict="complete"') == 1
    finally:
        gw.stop()
        sim.stop()


@pytest.mark.parametrize("raw", [
    b"NOT HTTP AT ALL\r\n\r\n",                                        # malformed: 400
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",  # 431
])
def test_what_the_server_refuses_unread_carries_a_request_id_too(gateway, raw):
    with socket.create_connection(("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]))) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith((b"http/1.1 400", b"http/1.1 431")), head
    assert b"\r\nx-request-id: " in head
