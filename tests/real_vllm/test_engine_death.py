"""vLLM 0.24.0 dies on one request (../shared/vllm/README.md): the guard stops each such
request before it reaches the engine and lets legitimate structured-output requests through;
with the guard in dry run the engine really dies, and Warden writes the incident naming the
request, cuts the streams in flight cleanly, retries nothing elsewhere, `warden bisect` names
the request against a fresh engine, and the quarantine then holds its second attempt."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.harness import GatewayThread, http, wait_until
from tests.real_vllm.engines import Engine, complete
from warden.audit.report import incident_files

JSON = {"Content-Type": "application/json"}
# Each kills a vLLM 0.24.0 engine (measured: ../shared/vllm/README.md).
KILLERS = {
    "json_object false": {"structured_outputs": {"json_object": False}},
    "empty json": {"structured_outputs": {"json": ""}},
}
# Their legitimate neighbours, which must reach the engine untouched and succeed.
LEGITIMATE = {
    "json schema": {"structured_outputs": {"json": {
        "type": "object", "properties": {"a": {"type": "integer"}}}}},
    "choice": {"structured_outputs": {"choice": ["yes", "no"]}},
    "regex": {"structured_outputs": {"regex": "[a-z]{3}"}},
    "json_object": {"response_format": {"type": "json_object"}},
}


def _chat(model: str, extra: dict, max_tokens: int = 8) -> bytes:
    return json.dumps({"model": model, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "Answer."}], **extra}).encode()


# Room for streams long enough (~10 s) to be in flight when the engine dies.
LONG_CONTEXT = ("--max-model-len", "2048")


@pytest.fixture(scope="module")
def old_engine():
    engine = Engine.start(*LONG_CONTEXT, version="0.24.0")
    yield engine
    engine.stop()


@pytest.mark.parametrize("name", LEGITIMATE)
def test_legitimate_structured_outputs_pass(old_engine, name):
    gateway = GatewayThread({"backends": [{"name": "old", "url": old_engine.url}]})
    try:
        status, _, body = http("POST", f"{gateway.url}/v1/chat/completions",
                               _chat(old_engine.model, LEGITIMATE[name]), JSON, timeout=120)
        assert status == 200, body
        assert gateway.metric("warden_guard_decisions_total") == 0
    finally:
        gateway.stop()
    assert old_engine.alive()


@pytest.mark.parametrize("name", KILLERS)
def test_the_guard_stops_what_kills_0_24(old_engine, name):
    """Normalized into the equivalent safe request (the empty constraint dropped): the client
    gets an answer and the engine lives."""
    assert old_engine.version().startswith("0.24")
    gateway = GatewayThread({"backends": [{"name": "old", "url": old_engine.url}]})
    try:
        wait_until(lambda: gateway.call(
            lambda: gateway.gateway.backends.named("old").vllm_version), timeout=30,
            what="the gateway to learn the engine's version")
        status, _, body = http("POST", f"{gateway.url}/v1/chat/completions",
                               _chat(old_engine.model, KILLERS[name]), JSON, timeout=120)
        assert status == 200, body
        assert gateway.metric("warden_guard_decisions_total", 'action="normalize"') == 1
    finally:
        gateway.stop()
    assert old_engine.alive()


def test_a_real_engine_death_end_to_end(tmp_path, old_engine):
    """The guard only watching: the poison kills the engine for real."""
    current = Engine.start(*LONG_CONTEXT)  # must not get the poison retried
    gateway = GatewayThread({
        "backends": [{"name": "old", "url": old_engine.url},
                     {"name": "current", "url": current.url}],
        "routing": {"policy": "round_robin"},
        "guard": {"mode": "dry_run"},
        "recorder": {"dir": str(tmp_path), "flush_interval": "50ms", "min_free_disk": 0}})
    poison = _chat(old_engine.model, KILLERS["json_object false"])
    old_port = old_engine.url.rsplit(":", 1)[1]
    try:
        wait_until(lambda: all(gateway.call(lambda: [
            b.vllm_version for b in gateway.gateway.backends])), timeout=30,
            what="both engines' versions")
        # Round robin alternates strictly: after an answer from `current`, `old` is next;
        # so the first stream goes to `old`, the second to `current` and the poison to `old`.
        streams: list[tuple[int, bytes]] = []

        def stream(n: int) -> None:
            body = json.dumps({"model": old_engine.model, "stream": True, "max_tokens": 1500,
                               "ignore_eos": True, "messages": [
                                   {"role": "user", "content": f"long {n}"}]}).encode()
            status, _, data = http("POST", f"{gateway.url}/v1/chat/completions", body,
                                   {**JSON, "X-Request-Id": f"stream-{n}"}, timeout=120)
            streams.append((status, data))

        def next_is_old() -> None:
            """Until an answer comes from `current` (two at most)."""
            while complete(gateway.url, old_engine.model)[1]["x-upstream-addr"].endswith(
                    old_port):
                pass

        threads = [threading.Thread(target=stream, args=(n,)) for n in range(2)]
        next_is_old()
        for n, thread in enumerate(threads):  # one stream on each engine: old, current
            thread.start()
            wait_until(lambda n=n: gateway.in_flight() == n + 1, what="the stream in flight")
        status, headers, body = http("POST", f"{gateway.url}/v1/chat/completions", poison,
                                     {**JSON, "X-Request-Id": "the-poison"}, timeout=120)
        assert headers["x-upstream-addr"].endswith(old_port)
        # (the engine's text names its internals: the client reads a generic one)
        assert status == 500 and b"withheld" in body and b"EngineCore" not in body, body
        assert gateway.metric("warden_upstream_retries_total") == 0

        wait_until(lambda: incident_files(str(tmp_path)), timeout=60, what="an incident")
        incident = json.loads(incident_files(str(tmp_path))[0].read_text())
        assert incident["backend"] == "old"
        assert incident["suspects"][0]["id"] == "the-poison"
        for thread in threads:
            thread.join(timeout=120)
        # The stream on the dying engine: vLLM's own error event (then its `[DONE]`), passed
        # on whole; the other engine's stream: untouched.
        cut, whole = sorted(streams, key=lambda s: s[1].find(b'data: {"error"') < 0)
        assert cut[0] == whole[0] == 200
        assert b'data: {"error"' in cut[1] and b"EngineCore" in cut[1]
        assert b'data: {"error"' not in whole[1] and whole[1].endswith(b"data: [DONE]\n\n")
        assert gateway.metric("warden_stream_verdicts_total", 'verdict="upstream_error"') == 1
        wait_until(lambda: not old_engine.alive(), timeout=30, what="the old engine to go")
        # The quarantine, fed by the incident, holds the poison's second attempt (which
        # would now go to the current engine).
        status, _, body = http("POST", f"{gateway.url}/v1/chat/completions", poison,
                               {**JSON, "X-Request-Id": "the-poison-again"}, timeout=60)
        assert status == 403, body
        assert incident["id"].encode() in body
    finally:
        gateway.stop()
        current.stop()

    scratch = Engine.start(version="0.24.0")
    try:
        bisected = subprocess.run(
            [sys.executable, "-m", "warden", "bisect", incident["id"], "--dir", str(tmp_path),
             "--target", scratch.url, "--settle", "3"],
            capture_output=True, text=True, timeout=600)
        assert bisected.returncode == 0, bisected.stdout + bisected.stderr
        assert "the killer: the-poison" in bisected.stdout
    finally:
        scratch.stop()
