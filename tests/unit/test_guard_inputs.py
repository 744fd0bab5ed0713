"""Inputs taken on trust: client embedding tensors, and Responses API input items whose
error vLLM repeats once per item. Each rule's crashing body (the source's reproducer) is
refused and its legitimate neighbour passes untouched; how a deployment allows embeddings."""

from __future__ import annotations

import copy

import orjson
import pytest

from tests.unit.test_guard_rules import CHAT, COMPLETIONS, admit, backend, chat, completion
from warden.config.schema import GuardSpec
from warden.guard.guard import Guard

RESPONSES = "/v1/responses"
# Stand-ins for base64 torch.save tensors (the guard never decodes them).
SPARSE = "<base64 torch.save sparse_coo_tensor(indices=[[10],[10]], values=[1.0], size=(3,3))>"
TENSOR = "<base64 torch.save float tensor [900, hidden]>"
PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAIAAAAlC+aJAAAAS0lEQVR42u3PMQ0A"
       "AAwDoEqv9ErYvQQckD4XAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAYHLA"
       "B8+AWnmfUycAAAAAElFTkSuQmCC")


def parts(*content: dict) -> dict:
    return chat(messages=[{"role": "user", "content": list(content)}])


# (rule, endpoint, crashing body, its neighbour)
CASES = [
    ("pe-untrusted", COMPLETIONS, {"model": "m", "prompt_embeds": SPARSE},  # CVE-2025-62164
     completion(prompt="hello")),
    ("pe-untrusted", COMPLETIONS,  # vllm#57719
     {"model": "m", "prompt_embeds": TENSOR, "repetition_penalty": 1.1, "max_tokens": 16},
     completion(repetition_penalty=1.1, max_tokens=16)),
    ("pe-untrusted", COMPLETIONS, {"model": "m", "prompt_embeds": [TENSOR, TENSOR]},  # #51122
     completion(prompt=["The capital of France is", "hi"])),
    ("pe-untrusted", CHAT,  # vllm#26928
     parts({"type": "image_embeds", "image_embeds": "<tensor with a wrong trailing dim>"}),
     parts({"type": "text", "text": "describe"},
           {"type": "image_url", "image_url": {"url": PNG}})),
    ("pe-untrusted", CHAT, parts({"type": "audio_embeds", "audio_embeds": "<tensor [19, 3584]>"}),
     parts({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}})),
    ("pe-untrusted", CHAT, parts({"type": "image_embeds", "image_embeds": {
        "image_embeds": TENSOR, "image_grid_thw": "<tensor>"}}),
     parts({"type": "text", "text": "the image_embeds field of vLLM"})),
    ("resp-input-shape", RESPONSES,  # vllm#49239 (thousands of items in the report)
     {"model": "m", "input": [{"role": "user", "content": 123}] * 50},
     {"model": "m", "input": [{"role": "user", "content": "hi"}]}),
    ("resp-input-shape", RESPONSES, {"model": "m", "input": ["hi", "there"]},
     {"model": "m", "input": "hi there"}),
    ("resp-input-shape", RESPONSES,
     {"model": "m", "input": [{"role": "user", "content": ["hi"]}]},
     {"model": "m", "input": [{"role": "user", "content": [
         {"type": "input_text", "text": "hi"}]}, {"type": "function_call_output",
                                                   "call_id": "c1", "output": "42"}]}),
]


@pytest.mark.parametrize(("rule_id", "path", "crashing", "neighbour"), CASES)
def test_each_rule_refuses_its_crash_and_spares_its_neighbour(rule_id, path, crashing,
                                                              neighbour):
    guard = Guard(GuardSpec())
    outcome = admit(guard, copy.deepcopy(crashing), [backend("0.32.0")], path)
    assert outcome is not None and outcome.notes == [f"rejected {rule_id}"], \
        outcome and outcome.notes
    rejection = outcome.rejection
    assert rejection is not None and rejection.status == 400 and rejection.param
    assert rule_id in rejection.message
    untouched = copy.deepcopy(neighbour)
    assert admit(guard, untouched, [backend("0.32.0")], path) is None
    assert untouched == neighbour


def test_the_message_names_the_place_of_the_bad_item():
    body = {"model": "m", "input": [{"role": "user", "content": "ok"},
                                    {"role": "user", "content": [{"type": "input_text",
                                                                  "text": "x"}, 7]}]}
    rejection = admit(Guard(GuardSpec()), body, [backend(None)], RESPONSES).rejection
    assert rejection.param == "input[1].content[1]"
    assert "repeats the whole input" in rejection.message


def test_input_items_are_judged_only_on_the_responses_endpoint():
    guard = Guard(GuardSpec(validation={"enabled": False}))
    embeddings = {"model": "m", "input": [{"role": "user", "content": 123}]}
    assert admit(guard, embeddings, [backend(None)], "/v1/embeddings") is None


def test_a_part_is_read_by_its_key_as_vllm_reads_it():
    """Without validation, a part with no type is read by its keys (vLLM does the same)."""
    guard = Guard(GuardSpec(validation={"enabled": False}))
    body = parts({"image_embeds": TENSOR})
    assert admit(guard, body, [backend(None)]).rejection.param == \
        "messages[0].content[0].image_embeds"


def test_an_escaped_key_is_still_seen():
    raw = b'{"model": "m", "messages": [{"role": "user", "content": [{"type": ' \
          b'"\\u0069mage_embeds", "\\u0069mage_embeds": "t"}]}]}'
    body = orjson.loads(raw)
    outcome = Guard(GuardSpec()).judge(CHAT, "m", body, raw, [backend(None)])
    assert outcome is not None and outcome.rejection is not None


def test_a_trusted_deployment_allows_embeddings():
    body = {"model": "m", "prompt_embeds": TENSOR}
    everywhere = Guard(GuardSpec(disable=["pe-untrusted"]))
    assert admit(everywhere, dict(body), [backend("0.32.0")], COMPLETIONS) is None
    trusted = backend("0.32.0", name="trusted", safe_for=["pe-untrusted"])
    other = backend("0.32.0", name="other")
    guard = Guard(GuardSpec())
    assert admit(guard, dict(body), [trusted], COMPLETIONS) is None  # every backend trusted
    assert admit(guard, dict(body), [trusted, other], COMPLETIONS).rejection is not None
    routed = Guard(GuardSpec(actions={"pe-untrusted": "route"}))
    assert admit(routed, dict(body), [trusted, other], COMPLETIONS).only == {"trusted"}


@pytest.mark.parametrize("value", [None, 0, True, "", [], {}, [None], [[]], {"content": 1},
                                   [{"role": None}], [{"content": None, "role": "user"}]])
def test_hostile_values_never_make_an_input_rule_raise(value):
    guard = Guard(GuardSpec(validation={"enabled": False}))
    for path in (CHAT, COMPLETIONS, RESPONSES):
        for body in ({"model": "m", "input": value}, {"model": "m", "prompt_embeds": value},
                     {"model": "m", "messages": value},
                     {"model": "m", "messages": [{"role": "user", "content": value}]},
                     {"model": "m", "messages": [{"role": "user", "content": [
                         {"type": "image_embeds", "image_embeds": value}]}]}):
            admit(guard, body, [backend(None)], path)
