"""An operator ends a request in flight (POST /admin/requests/ID/abort, `warden requests
abort`): through the exchange's single end, its client told (an error event in a stream that
began, a 503 before the answer began), its engine let go, its backend not blamed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import openai

from tests.harness import GatewayThread, http, stream_error, wait_until


def warden(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "warden", *args], capture_output=True,
                          text=True, timeout=30)


def in_flight(gw: GatewayThread) -> list[dict]:
    _, _, body = http("GET", f"{gw.url}/admin/requests")
    return json.loads(body)["requests"]


def backend_of(gw: GatewayThread, name: str) -> dict:
    _, _, body = http("GET", f"{gw.url}/admin/backends")
    return next(b for b in json.loads(body)["backends"] if b["name"] == name)


def test_the_cli_lists_and_aborts_a_stream(slow_fleet, slow_gateway):
    gw = slow_gateway
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="sim-model", stream=True, messages=[{"role": "user", "content": "long"}],
        extra_headers={"X-Request-Id": "to-abort"})
    ended: list[openai.APIError] = []
    reader = threading.Thread(target=lambda: ended.append(stream_error(stream)))
    reader.start()
    wait_until(lambda: any(r["id"] == "to-abort" and r["events"] for r in in_flight(gw)),
               what="the stream under way")
    backend = in_flight(gw)[0]["backend"]

    listing = warden("requests", "list", "--url", gw.url)
    assert listing.returncode == 0 and "to-abort" in listing.stdout and backend in listing.stdout
    aborted = warden("requests", "abort", "to-abort", "--url", gw.url)
    assert aborted.returncode == 0 and f"aborted to-abort (on {backend})" in aborted.stdout
    reader.join(timeout=10)
    assert ended and "aborted by an operator" in str(ended[0])
    gw.wait_idle()
    node = int(backend.removeprefix("node-"))
    wait_until(lambda: slow_fleet.metric(node, "vllm:num_requests_running") == 0,
               what="the engine let the request go")
    state = backend_of(gw, backend)
    assert state["state"] == "ready" and state["failures"] == 0  # not the backend's fault

    again = warden("requests", "abort", "to-abort", "--url", gw.url)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "no request 'to-abort' in flight" in again.stderr


def test_an_abort_before_the_answer_began_answers_503(slow_gateway):
    gw = slow_gateway
    answered: list[tuple[int, bytes]] = []

    def plain() -> None:  # (not streamed: its answer's head comes when it is all generated)
        status, _, body = http("POST", f"{gw.url}/v1/chat/completions", json.dumps({
            "model": "sim-model", "messages": [{"role": "user", "content": "long"}]}).encode(),
            {"Content-Type": "application/json", "X-Request-Id": "plain-abort"}, timeout=30)
        answered.append((status, body))

    caller = threading.Thread(target=plain)
    caller.start()
    wait_until(lambda: any(r["id"] == "plain-abort" for r in in_flight(gw)),
               what="the request in flight")
    status, _, body = http("POST", f"{gw.url}/admin/requests/plain-abort/abort")
    assert status == 200, body
    caller.join(timeout=10)
    assert answered and answered[0][0] == 503
    assert json.loads(answered[0][1])["error"]["code"] == "aborted"
    gw.wait_idle()
    status, _, body = http("POST", f"{gw.url}/admin/requests/plain-abort/oops")
    assert status == 404 and b"expected /admin/requests/ID/abort" in body
