"""vLLM 0.11.0, the seeds' version, dies on each of eleven single requests whose structured
outputs carry no usable constraint (../shared/vllm/README.md). Through Warden's guard none of
them reaches the engine as sent: each is normalized into the equivalent safe request (200) or
refused (400), and the engine lives; their legitimate neighbours pass untouched. Last, the
seed's request sent straight to the engine kills it: the guard was what kept it up."""

from __future__ import annotations

import json

import pytest

from tests.harness import GatewayThread, http, wait_until
from tests.real_vllm.engines import Engine

JSON = {"Content-Type": "application/json"}
NULLS = dict.fromkeys(("json", "regex", "choice", "grammar", "json_object", "structural_tag"))
# Each kills a vLLM 0.11.0 engine (measured; the first is the seed's).
KILLERS = {
    "empty structured_outputs": {"structured_outputs": {}},
    "json null": {"structured_outputs": {"json": None}},
    "all six null": {"structured_outputs": NULLS},
    "json_object false": {"structured_outputs": {"json_object": False}},
    "empty json": {"structured_outputs": {"json": ""}},
    "bad regex": {"structured_outputs": {"regex": "\\"}},
    "empty grammar": {"structured_outputs": {"grammar": ""}},
    "empty structural_tag": {"structured_outputs": {"structural_tag": ""}},
    "json_schema without schema": {"response_format": {
        "type": "json_schema", "json_schema": {"name": "x"}}},
    "json_schema with a null schema": {"response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": None}}},
    "response_format text": {"response_format": {"type": "text"}},
}
LEGITIMATE = {
    "json schema": {"structured_outputs": {"json": {
        "type": "object", "properties": {"a": {"type": "integer"}}}}},
    "choice": {"structured_outputs": {"choice": ["yes", "no"]}},
    "regex": {"structured_outputs": {"regex": "[a-z]{3}"}},
    "json_schema with its schema": {"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}}},
}


def _chat(model: str, extra: dict) -> bytes:
    return json.dumps({"model": model, "max_tokens": 8,
                       "messages": [{"role": "user", "content": "Answer."}], **extra}).encode()


@pytest.fixture(scope="module")
def seed_engine():
    engine = Engine.start(version="0.11.0")
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def gateway(seed_engine):
    gw = GatewayThread({"backends": [{"name": "seed", "url": seed_engine.url}]})
    wait_until(lambda: gw.call(lambda: gw.gateway.backends.named("seed").vllm_version),
               timeout=30, what="the gateway to learn the engine's version")
    yield gw
    gw.stop()


@pytest.mark.parametrize("name", LEGITIMATE)
def test_legitimate_structured_outputs_pass_untouched(seed_engine, gateway, name):
    decided = gateway.metric("warden_guard_decisions_total")
    status, _, body = http("POST", f"{gateway.url}/v1/chat/completions",
                           _chat(seed_engine.model, LEGITIMATE[name]), JSON, timeout=120)
    assert status == 200, body
    assert gateway.metric("warden_guard_decisions_total") == decided
    assert seed_engine.alive()


@pytest.mark.parametrize("name", KILLERS)
def test_the_guard_stops_what_kills_0_11(seed_engine, gateway, name):
    assert seed_engine.version() == "0.11.0"
    decided = gateway.metric("warden_guard_decisions_total")
    status, _, body = http("POST", f"{gateway.url}/v1/chat/completions",
                           _chat(seed_engine.model, KILLERS[name]), JSON, timeout=120)
    assert status in (200, 400), body
    if status == 400:
        assert json.loads(body)["error"]["code"] == "rejected_by_guard"
    assert gateway.metric("warden_guard_decisions_total") == decided + 1
    assert seed_engine.alive(), f"{name} reached the engine and killed it"


def test_without_the_guard_the_seed_request_kills_it(seed_engine, gateway):
    """The control, last in the module: sent straight to the engine, the seed's request is
    fatal (so the tests above passed because of the guard, not a forgiving engine)."""
    status, _, body = http("POST", f"{seed_engine.url}/v1/chat/completions",
                           _chat(seed_engine.model, KILLERS["empty structured_outputs"]),
                           JSON, timeout=120)
    assert status == 500 and b"EngineCore" in body, body
    wait_until(lambda: not seed_engine.alive(), timeout=30, what="the engine to die")
