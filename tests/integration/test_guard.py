"""The guard in front of `warden sim` nodes with vLLM 0.11's crash triggers, through the
openai SDK: the seed's request is normalized and succeeds, an uncompilable regex never reaches
a node, legitimate structured outputs pass untouched, and a fleet of fixed versions is left
alone."""

from __future__ import annotations

import openai
import orjson
import pytest
from openai import OpenAI

from tests.harness import GatewayThread, SimProcess, http

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def old_fleet():
    sim = SimProcess(2, "--restart-after", "-1")  # 0.11.0: the seed's request kills it
    gw = GatewayThread({"backends": sim.backends_config()})
    yield sim, gw
    gw.stop()
    sim.stop()


def test_versions_are_learned_from_the_backends(old_fleet):
    _, gw = old_fleet
    assert {b.vllm_version for b in gw.gateway.backends} == {"0.11.0"}


def test_the_seeds_request_is_normalized_and_no_engine_dies(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    for n in range(4):  # unguarded, the first of these would kill its node
        completion = client.chat.completions.create(
            model="sim-model", messages=MESSAGES, max_tokens=2,
            extra_body={"structured_outputs": {}}, extra_headers={"X-Request-Id": f"seed-{n}"})
        assert completion.choices[0].finish_reason == "length"
    assert [http("GET", f"{sim.url(i)}/health")[0] for i in range(2)] == [200, 200]
    assert gw.metric("warden_guard_decisions_total",
                     'action="normalize",mode="enforce",rule="so-no-constraint"') == 4


def test_an_uncompilable_regex_never_reaches_a_node(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="sim-model", messages=MESSAGES, extra_body={"structured_outputs": {
                "regex": "\\"}}, extra_headers={"X-Request-Id": "bad-regex"})
    error = caught.value.body
    assert error["code"] == "rejected_by_guard" and error["param"] == "structured_outputs.regex"
    assert "so-bad-regex" in error["message"]
    assert not any("bad-regex" in ids for ids in sim.request_ids().values())


def test_legitimate_structured_outputs_pass_untouched(old_fleet):
    _, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    before = gw.metric("warden_guard_decisions_total")
    for extra in ({"structured_outputs": {"json": {"type": "object"}}},
                  {"response_format": {"type": "json_object"}},
                  {"structured_outputs": {"choice": ["yes", "no"]}}, {"logprobs": True}):
        client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=2,
                                       extra_body=extra)
    assert gw.metric("warden_guard_decisions_total") == before


def test_a_fleet_of_fixed_versions_is_left_alone():
    sim = SimProcess(1, "--vllm-version", "0.32.0")
    gw = GatewayThread({"backends": sim.backends_config()})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=2,
                                       extra_body={"structured_outputs": {}})
        assert gw.metric("warden_guard_decisions_total") == 0
    finally:
        gw.stop()
        sim.stop()


def test_a_malformed_body_is_refused_naming_its_parameter(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                       extra_body={"max_tokens": 1.5},
                                       extra_headers={"X-Request-Id": "float-max-tokens"})
    error = caught.value.body
    assert error["param"] == "max_tokens" and error["code"] == "invalid_type"
    assert error["message"] == "max_tokens: expected an integer, got a number"
    assert not any("float-max-tokens" in ids for ids in sim.request_ids().values())
    assert gw.metric("warden_guard_decisions_total", 'rule="schema"') >= 1


def test_a_media_url_on_a_private_address_never_reaches_a_node(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="sim-model", extra_headers={"X-Request-Id": "metadata-fetch"},
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "describe"},
                {"type": "image_url",
                 "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}]}])
    error = caught.value.body
    assert error["param"] == "messages[0].content[1].image_url"
    assert "169.254.169.254 is not a public address" in error["message"]
    assert not any("metadata-fetch" in ids for ids in sim.request_ids().values())


def test_custom_rules_from_the_config_apply(tmp_path):
    sim = SimProcess(1, "--vllm-version", "0.32.0")
    gw = GatewayThread({"backends": sim.backends_config(), "guard": {"custom": [
        {"id": "cap-max-tokens", "action": "normalize", "match": {"max_tokens": {"gt": 8}},
         "set": {"max_tokens": 8}},
        {"id": "no-n", "action": "reject", "match": {"n": {"gt": 1}},
         "message": "one completion per request here"}]}})
    try:
        client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
        capped = client.chat.completions.create(model="sim-model", messages=MESSAGES,
                                                max_tokens=50)
        assert capped.usage.completion_tokens == 8 and capped.choices[0].finish_reason == "length"
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="sim-model", messages=MESSAGES, n=2)
        assert caught.value.body["param"] == "n"
        assert caught.value.body["message"].startswith("one completion per request here")
    finally:
        gw.stop()
        sim.stop()


# The killers in the spellings vLLM's lax parsing reads as empty or false constraints.
LAX_KILLERS = [{"structured_outputs": {"json_object": 0}},
               {"structured_outputs": {"json_object": 0.0}},
               {"structured_outputs": {"json_object": "false"}},
               {"structured_outputs": {"regex": ""}}, {"guided_grammar": ""}]


def test_the_lax_killers_kill_a_0_11_node_sent_straight_to_it():
    sim = SimProcess(len(LAX_KILLERS), "--restart-after", "-1")  # one node per killer
    try:
        for node, killer in enumerate(LAX_KILLERS):
            body = {"model": "sim-model", "messages": MESSAGES, "max_tokens": 2, **killer}
            assert http("GET", f"{sim.url(node)}/health")[0] == 200
            status, _, _ = http("POST", f"{sim.url(node)}/v1/chat/completions",
                                orjson.dumps(body))
            assert status == 500, killer
            assert http("GET", f"{sim.url(node)}/health")[0] == 503, killer
    finally:
        sim.stop()


@pytest.mark.parametrize("validation", [True, False])
def test_the_lax_killers_never_kill_a_node_through_the_guard(old_fleet, validation):
    sim, gw = old_fleet
    own = None if validation else GatewayThread({"backends": sim.backends_config(), "guard": {
        "validation": {"enabled": False}}})
    client = OpenAI(base_url=f"{(own or gw).url}/v1", api_key="x", max_retries=0)
    try:
        for killer in LAX_KILLERS:
            try:  # normalized (the constraint dropped) or refused by the schema: never sent
                completion = client.chat.completions.create(
                    model="sim-model", messages=MESSAGES, max_tokens=2, extra_body=killer)
                assert completion.choices[0].finish_reason == "length"
            except openai.BadRequestError as e:
                assert validation and e.body["code"] == "invalid_type", e.body
                assert e.body["param"] == "structured_outputs.json_object"
        assert [http("GET", f"{sim.url(i)}/health")[0] for i in range(2)] == [200, 200]
    finally:
        if own is not None:
            own.stop()


def test_max_tokens_zero_is_refused_naming_it(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-model", messages=MESSAGES, max_tokens=0,
                                       extra_headers={"X-Request-Id": "zero-max-tokens"})
    assert caught.value.body["param"] == "max_tokens"
    assert not any("zero-max-tokens" in ids for ids in sim.request_ids().values())


@pytest.mark.parametrize("url", ["http://127\u30020\u30020\u30021/",
                                 "http://\u2460\u2461\u2466.0.0.1/"])
def test_a_disguised_loopback_image_never_reaches_a_node(old_fleet, url):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="sim-model", extra_headers={"X-Request-Id": "disguised-loopback"},
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}])
    assert "127.0.0.1" in caught.value.body["message"]
    assert not any("disguised-loopback" in ids for ids in sim.request_ids().values())


def test_a_responses_input_image_on_the_metadata_address_never_reaches_a_node(old_fleet):
    sim, gw = old_fleet
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="sim-model", extra_headers={"X-Request-Id": "responses-metadata"},
            input=[{"role": "user", "content": [
                {"type": "input_text", "text": "describe"},
                {"type": "input_image", "image_url": "http://169.254.169.254/latest/",
                 "detail": "auto"}]}])
    error = caught.value.body
    assert error["param"] == "input[0].content[1].image_url"
    assert error["code"] == "rejected_by_guard"
    assert not any("responses-metadata" in ids for ids in sim.request_ids().values())
    answered = client.responses.create(model="sim-model", input="hello", max_output_tokens=2)
    assert answered.output_text is not None
