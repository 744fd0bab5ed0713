"""Model facts learned from real `warden sim` nodes over real sockets, with no `guard.models`
configured: the gateway learns each node's vocabulary, context length and special tokens
from its API server (never its engine), shows them in /admin/backends and `warden backends
list`, and the token-id rules act on the smaller vocabulary of the two."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http, wait_until

MESSAGES = [{"role": "user", "content": "hi"}]
FLEET = """\
nodes:
  - {vllm_version: 0.8.5, vocab_size: 50000, special_tokens: ['<|im_start|>', '<image>']}
  - {vllm_version: 0.11.0, vocab_size: 40000, special_tokens: ['<|im_end|>'],
     enable_tokenizer_info_endpoint: true}
"""


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    path = tmp_path_factory.mktemp("fleet") / "fleet.yaml"
    path.write_text(FLEET)
    sim = SimProcess(2, "--fleet", str(path))
    gw = GatewayThread({"backends": sim.backends_config()})
    wait_until(lambda: all(facts(gw, name)["vocab_size"]["value"]
                           for name in ("node-0", "node-1")), what="the vocabularies learned")
    yield sim, gw
    gw.stop()
    sim.stop()


def facts(gw: GatewayThread, backend: str) -> dict:
    _, _, body = http("GET", f"{gw.url}/admin/backends")
    listed = {b["name"]: b for b in json.loads(body)["backends"]}
    return listed[backend]["facts"]["sim-model"]


def test_learning_asks_the_api_server_and_never_the_engine(learned):
    sim, _ = learned
    for node in range(2):  # (before any test request: every request so far was the learner's)
        assert sim.metric(node, "vllm:request_success_total") == 0
        assert sim.metric(node, "vllm:prompt_tokens_total") == 0


def test_admin_backends_shows_each_fact_and_where_it_came_from(learned):
    _, gw = learned
    old, new = facts(gw, "node-0"), facts(gw, "node-1")
    assert old["vocab_size"] == {"value": 50000, "source": "learned",
                                 "from": "POST /detokenize"}
    assert new["vocab_size"]["value"] == 40000
    assert old["max_model_len"] == {"value": 4096, "source": "learned",
                                    "from": "GET /v1/models"}
    assert old["special_tokens"] == {"value": ["<|im_start|>", "<image>"],
                                     "source": "learned", "from": "POST /tokenize"}
    assert new["special_tokens"] == {"value": ["<|im_end|>"], "source": "learned",
                                     "from": "GET /tokenizer_info"}
    assert old["modalities"] == {"value": None, "source": "unknown"}


def test_a_token_id_past_the_learned_vocabulary_is_refused_and_one_inside_passes(learned):
    sim, gw = learned
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=2,
                                       logit_bias={"45000": 5},
                                       extra_headers={"X-Request-Id": "past-vocab"})
    error = caught.value.body
    assert error["code"] == "rejected_by_guard" and error["param"] == "logit_bias"
    assert "tok-logit-bias-oov" in error["message"] and "vocabulary of 40000" in error["message"]
    assert not any("past-vocab" in ids for ids in sim.request_ids().values())
    completion = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                max_tokens=2, logit_bias={"39999": 5})
    assert completion.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError, match="tok-prompt-ids-oov"):
        client.completions.create(model="sim-model", prompt=[1, 2, 40000], max_tokens=2)


def test_warden_backends_list_prints_the_facts(learned):
    _, gw = learned
    listing = subprocess.run([sys.executable, "-m", "warden", "backends", "list", "--url",
                              gw.url], capture_output=True, text=True, timeout=30, check=True)
    assert "sim-model: vocab_size 50000 (POST /detokenize), max_model_len 4096 " \
        "(GET /v1/models), special_tokens 2 tokens (POST /tokenize), modalities ?" \
        in listing.stdout


def test_a_backend_behind_an_api_key_is_learned_too():
    """vLLM --api-key guards /v1 routes: discovery and the learner send the backend's key."""
    sim = SimProcess(1, "--api-key", "backend-secret", "--vocab-size", "3000")
    gw = GatewayThread({"backends": [{"name": "a", "url": sim.url(0),
                                      "api_key": "backend-secret"}]})
    try:
        shown = wait_until(lambda: facts(gw, "a")["vocab_size"]["value"],
                           what="the vocabulary learned")
        assert shown == 3000
    finally:
        gw.stop()
        sim.stop()
