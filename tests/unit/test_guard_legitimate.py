"""Legitimate but unusual requests: every rule and the schema validation let them through
untouched (the rules' own neighbours are in test_guard_rules' cases)."""

from __future__ import annotations

import copy
import dataclasses

import orjson
import pytest

from tests.unit.test_guard_rules import (
    CHAT,
    COMPLETIONS,
    FACTS,
    OLD,
    PNG_64,
    admit,
    backend,
    chat,
)
from warden.config.schema import GuardSpec
from warden.guard.guard import Guard
from warden.guard.triggers import RuleIndex

CORPUS = [  # legitimate but unusual: every rule and the validation must let these through
    chat(response_format={"type": "json_schema", "json_schema": {
        "name": "person", "strict": True, "schema": {
            "type": "object", "required": ["name", "age"],
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                           "tags": {"type": "array", "items": {"type": "string"}},
                           "address": {"anyOf": [{"type": "null"}, {
                               "type": "object", "properties": {"city": {"type": "string"}}}]}},
        }}}),
    chat(tools=[{"type": "function", "function": {
        "name": "get_weather", "description": "weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}],
         tool_choice={"type": "function", "function": {"name": "get_weather"}},
         parallel_tool_calls=False),
    chat(logprobs=True, top_logprobs=20, n=4, best_of=8, max_tokens=256, seed=1,
         logit_bias={"15": -100, "999": 2}, stop_token_ids=[0, 2], min_tokens=3),
    {**chat(), "model": "sql-lora"},  # a LoRA adapter served under its own name
    chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "image_url", "image_url": {"url": PNG_64}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]),
    chat(structured_outputs={"regex": "[A-Z]{3}-\\d{4}"}, chat_template_kwargs={
        "enable_thinking": True}, repetition_penalty=1.2, top_k=40, min_p=0.1),
    chat(guided_choice=["yes", "no"], guided_json={"type": "object"}, ignore_eos=True),
]


@pytest.mark.parametrize("body", CORPUS)
def test_a_corpus_of_legitimate_but_unusual_requests_passes_untouched(body):
    guard = Guard(GuardSpec(models={**FACTS, "sql-lora": FACTS["m"]}))
    untouched = copy.deepcopy(body)
    model = body["model"]
    outcome = guard.judge(CHAT, model, untouched, orjson.dumps(body),
                          [backend(OLD), backend(None)])
    assert outcome is None and untouched == body
    completions = {"model": "m", "prompt": [[1, 2, 3], [999]], "echo": True, "logprobs": 5,
                   "prompt_logprobs": 20, "suffix": "!"}
    assert admit(guard, completions, [backend(OLD)], COMPLETIONS) is None


def test_a_rule_that_fails_lets_the_request_through_and_is_counted(caplog):
    guard = Guard(GuardSpec(models=FACTS))
    broken = dataclasses.replace(guard.index.rules[0], find=lambda body, ctx: 1 / 0)
    guard.index = RuleIndex((broken, *guard.index.rules[1:]))
    body = chat(structured_outputs={})
    outcome = admit(guard, body, [backend(OLD)])
    assert outcome is None or outcome.rejection is None
    assert guard.decisions[broken.id, "error", "enforce"] == 1
    assert "failed on a request" in caplog.text


def test_a_regex_too_large_to_count_is_refused_not_raised():
    outcome = admit(Guard(GuardSpec()), chat(structured_outputs={"regex": "a{4294967296}"}),
                    [backend(OLD)])
    assert outcome.rejection is not None and "so-bad-regex" in outcome.notes[-1]


def test_a_fix_that_fails_refuses_the_request_it_found_harmful():
    guard = Guard(GuardSpec(models=FACTS))
    position = next(i for i, rule in enumerate(guard.index.rules) if rule.id == "so-no-constraint")

    def broken(body):
        raise KeyError("bug")

    rules = list(guard.index.rules)
    rules[position] = dataclasses.replace(rules[position], fix=broken)
    guard.index = RuleIndex(rules)
    outcome = admit(guard, chat(structured_outputs={}), [backend(OLD)])
    assert outcome.rejection is not None and outcome.notes == ["rejected so-no-constraint"]
    assert guard.decisions["so-no-constraint", "error", "enforce"] == 1
