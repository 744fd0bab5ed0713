"""Request bodies against the OpenAI schema plus vLLM's extras: each problem is named by its
parameter, legitimate bodies (including every field the SDK sends) pass untouched."""

from __future__ import annotations

import orjson
import pytest

from warden.config.schema import GuardSpec, ValidationSpec
from warden.guard.guard import Guard
from warden.guard.validate import Validator

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
RESPONSES = "/v1/responses"
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**extra) -> dict:
    return {"model": "m", "messages": MESSAGES, **extra}


LEGITIMATE = [
    (CHAT, chat()),
    (CHAT, chat(max_tokens=16, temperature=0.7, top_p=1, n=2, stream=True,
                stream_options={"include_usage": True}, stop=["\n", "END"], seed=7,
                presence_penalty=-1.5, frequency_penalty=0.5, logit_bias={"50256": -100},
                logprobs=True, top_logprobs=5, user="u-1", tools=[
                    {"type": "function", "function": {"name": "f", "parameters": {}}}],
                tool_choice="auto", response_format={"type": "json_object"},
                top_k=-1, min_p=0.05, repetition_penalty=1.1, ignore_eos=False,
                structured_outputs={"choice": ["a", "b"]}, stop_token_ids=[2],
                chat_template_kwargs={"enable_thinking": False}, priority=0)),
    (CHAT, chat(temperature=None, max_tokens=None, stop=None)),  # null is absent
    (CHAT, chat(messages=[
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "1"}])),
    (CHAT, chat(some_future_vllm_field={"x": 1})),  # unknown fields pass
    (COMPLETIONS, {"model": "m", "prompt": "hi", "logprobs": 3, "echo": True, "max_tokens": 0}),
    (COMPLETIONS, {"model": "m", "prompt": [1, 2, 3]}),
    (COMPLETIONS, {"model": "m", "prompt": [[1, 2], [3]]}),
    (COMPLETIONS, {"model": "m", "prompt": ["a", "b"]}),
    (EMBEDDINGS, {"model": "m", "input": ["a", "b"], "encoding_format": "float"}),
    ("/v1/responses", {"model": "m", "input": 5}),  # no table: vLLM checks its own shapes
]

PROBLEMS = [
    (CHAT, chat(max_tokens=1.5), "max_tokens", "expected an integer, got a number"),
    (CHAT, chat(max_tokens=True), "max_tokens", "expected an integer, got a boolean"),
    (CHAT, chat(n="2"), "n", "expected an integer, got a string"),
    (CHAT, chat(temperature="hot"), "temperature", "expected a number, got a string"),
    (CHAT, chat(temperature=-0.1), "temperature", "out of range (>= 0)"),
    (CHAT, chat(top_p=1.5), "top_p", "out of range (<= 1)"),
    (CHAT, chat(presence_penalty=3), "presence_penalty", "out of range (<= 2)"),
    (CHAT, chat(n=0), "n", "out of range (>= 1)"),
    (CHAT, chat(stream="yes"), "stream", "expected a boolean"),
    (CHAT, chat(stream_options={"include_usage": 1}), "stream_options.include_usage",
     "expected a boolean"),
    (CHAT, {"model": "m"}, "messages", "required"),
    (CHAT, chat(messages=[]), "messages", "at least one message"),
    (CHAT, chat(messages="hi"), "messages", "expected an array"),
    (CHAT, chat(messages=[{"content": "hi"}]), "messages[0].role", "expected a string"),
    (CHAT, chat(messages=[{"role": "user", "content": 5}]), "messages[0].content",
     "expected a string or an array"),
    (CHAT, chat(messages=[{"role": "user", "content": [{"text": "x"}]}]),
     "messages[0].content[0].type", "expected a string"),
    (CHAT, chat(stop=["a"] * 65), "stop", "at most 64 items"),
    (CHAT, chat(stop=["a", 5]), "stop[1]", "expected a string"),
    (CHAT, chat(logit_bias={"x": 1}), "logit_bias", "not a token id"),
    (CHAT, chat(logit_bias={"5": 101}), "logit_bias[5]", "out of range"),
    (CHAT, chat(tools=[{"type": "function", "function": {"name": 3}}]),
     "tools[0].function.name", "expected a string"),
    (CHAT, chat(stop_token_ids=[1, -2]), "stop_token_ids[1]", "out of range"),
    (CHAT, chat(response_format={"type": 1}), "response_format.type", "expected a string"),
    (COMPLETIONS, {"model": "m", "prompt": []}, "prompt", "must not be empty"),
    (COMPLETIONS, {"model": "m", "prompt": [1, "a"]}, "prompt[1]", "expected an integer"),
    (COMPLETIONS, {"model": "m", "prompt": "x", "logprobs": True}, "logprobs",
     "expected an integer"),
    (EMBEDDINGS, {"model": "m", "input": {"a": 1}}, "input", "expected a string or an array"),
    (EMBEDDINGS, {"model": "m", "input": "x", "dimensions": 0}, "dimensions", "out of range"),
]


@pytest.mark.parametrize(("path", "body"), LEGITIMATE)
def test_legitimate_bodies_pass(path, body):
    assert Validator(ValidationSpec()).problem(path, body) is None


@pytest.mark.parametrize(("path", "body", "param", "reason"), PROBLEMS)
def test_each_problem_is_named_by_its_parameter(path, body, param, reason):
    problem = Validator(ValidationSpec()).problem(path, body)
    assert problem is not None and problem.status == 400
    assert problem.param == param and reason in problem.message, problem.message


def nesting(levels: int) -> dict:
    """A body whose containers nest exactly `levels` deep (the body itself is level 1)."""
    deep: dict | list = [1]
    for _ in range(levels - 4):  # the body, messages, the message and [1] are four
        deep = {"x": deep}
    return {"model": "m", "messages": [{"role": "user", "content": "hi", "extra": deep}]}


def test_content_parts_are_bounded_in_all_messages_together():
    validator = Validator(ValidationSpec(max_content_parts=4))
    part = {"type": "text", "text": "x"}
    two = [{"role": "user", "content": [part, part]}, {"role": "user", "content": [part] * 2}]
    assert validator.problem(CHAT, chat(messages=two)) is None
    problem = validator.problem(CHAT, chat(messages=[*two, {"role": "user", "content": [part]}]))
    assert problem is not None and problem.code == "too_many_content_parts"
    assert problem.param == "messages[2].content"


def test_responses_input_items_and_their_parts_are_bounded_too():
    validator = Validator(ValidationSpec(max_messages=3, max_content_parts=4))
    part = {"type": "input_text", "text": "x"}
    item = {"role": "user", "content": [part, part]}
    assert validator.problem(RESPONSES, {"model": "m", "input": [item, item]}) is None
    assert validator.problem(RESPONSES, {"model": "m", "input": "just text"}) is None
    parts = validator.problem(RESPONSES, {"model": "m", "input": [item, item, {
        "role": "user", "content": [part]}]})
    assert parts is not None and parts.code == "too_many_content_parts"
    assert parts.param == "input[2].content"
    items = validator.problem(RESPONSES, {"model": "m", "input": ["a", "b", "c", "d"]})
    assert items is not None and items.param == "input"


def test_a_body_of_many_tiny_parts_is_refused_before_the_rules_walk_it():
    """A 100 MB body (the default bound) of tiny parts would cost the media rules seconds."""
    parts = [{"type": "text", "text": "x"}] * 5000 + [{"type": "image_url", "image_url": {
        "url": "http://127.0.0.1/a.png"}}]
    body = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    outcome = Guard(GuardSpec()).judge(CHAT, "m", body, orjson.dumps(body), [])
    assert outcome is not None and outcome.notes == ["rejected schema messages[0].content"]


def test_depth_is_bounded_exactly():
    validator = Validator(ValidationSpec(max_depth=8))
    problem = validator.problem(CHAT, nesting(9))
    assert problem is not None and problem.code == "too_deep"
    assert validator.problem(CHAT, nesting(8)) is None
    wide = chat(messages=[{"role": "user", "content": "hi"}] * 50)  # many brackets, shallow
    assert validator.problem(CHAT, wide) is None
    brackets = chat(messages=[{"role": "user", "content": "[{" * 100}])  # text, not depth
    assert validator.problem(CHAT, brackets) is None


def test_the_deepest_bound_allowed_is_walked_without_running_out_of_stack():
    validator = Validator(ValidationSpec(max_depth=512))  # (the schema's highest)
    problem = validator.problem(CHAT, nesting(513))
    assert problem is not None and problem.code == "too_deep"
    assert validator.problem(CHAT, nesting(512)) is None


def test_unknown_fields_are_refused_when_configured():
    validator = Validator(ValidationSpec(unknown_fields="reject"))
    problem = validator.problem(CHAT, chat(tempreature=0.5))
    assert problem is not None and problem.param == "tempreature"
    assert "Unrecognized request argument supplied: tempreature" in problem.message
    assert validator.problem(CHAT, chat(temperature=0.5, ignore_eos=True)) is None
