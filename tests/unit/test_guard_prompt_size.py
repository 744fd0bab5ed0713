"""The prompt-size rules: a prompt longer than the context (counted low, so a prompt that may
fit always passes) and prompt logprobs past the memory bound are refused; truncated prompts,
/tokenize and prompts within the bounds pass."""

from __future__ import annotations

import pytest

from tests.unit.test_guard_sampling import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    admit,
    guard,
    rejected_by,
    untouched,
)
from warden.config.schema import ModelFacts

# -- prompt length and prompt logprobs ------------------------------------------------------

def long_chat(chars: int, **extra) -> dict:
    return {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": [
                                           {"type": "text", "text": "x" * chars}]}], **extra}


@pytest.mark.parametrize(("path", "body", "param"), [
    (CHAT, long_chat(40000), "messages"),                       # 10000 tokens at least
    (COMPLETIONS, {"prompt": [1] * 20000}, "prompt"),           # token ids: counted
    (COMPLETIONS, {"prompt": ["short", "x" * 40000]}, "prompt"),
    (EMBEDDINGS, {"input": "x" * 40000}, "input")])
def test_a_prompt_longer_than_the_context_is_refused(path, body, param):
    outcome = admit(guard(validate=False, max_chars_per_token=4), {"model": "m", **body}, path)
    assert rejected_by(outcome, "ctx-prompt-too-long") and outcome.rejection.param == param
    assert "more than the model's context of 2048" in outcome.rejection.message


def test_the_default_estimate_never_counts_more_tokens_than_text_can_hold():
    g = guard()  # the default: 256 characters a token
    assert rejected_by(admit(g, {"model": "m", "prompt": "x" * (2048 * 256 + 256)}),
                       "ctx-prompt-too-long")
    assert untouched(g, {"model": "m", "prompt": "x" * (2048 * 256 + 255)})


@pytest.mark.parametrize("body", [
    long_chat(40000, truncate_prompt_tokens=2047),   # vLLM cuts it to the context's room
    long_chat(40000, truncate_prompt_tokens=100),
    long_chat(8192),                                 # 2048 tokens at least: it may fit
    {"model": "m", "prompt": [1] * 2048},
    {"model": "m", "prompt": "x" * 30000},           # past the context, but under 32 KiB
])
def test_a_prompt_that_may_fit_or_is_truncated_passes(body):
    path = CHAT if "messages" in body else COMPLETIONS
    assert untouched(guard(validate=False, max_chars_per_token=4), body, path)


def test_a_long_prompt_truncated_to_the_whole_context_is_left_room_not_refused():
    body = long_chat(40000, truncate_prompt_tokens=-1)
    outcome = admit(guard(validate=False, max_chars_per_token=4), body, CHAT)
    assert outcome.rejection is None and outcome.notes == ["normalized trunc-prompt-no-room"]
    assert body["truncate_prompt_tokens"] == 2047


def test_tokenize_counts_a_long_prompt_and_takes_an_empty_one():
    g = guard(validate=False, max_chars_per_token=4)
    assert untouched(g, {"model": "m", "prompt": "x" * 40000}, "/tokenize")
    assert untouched(g, long_chat(40000), "/tokenize")
    assert untouched(g, {"model": "m", "prompt": ""}, "/tokenize", "0.5.4")
    assert untouched(g, {"model": "m", "messages": [], "add_generation_prompt": False},
                     "/tokenize")


def test_without_a_context_length_the_prompt_is_not_measured():
    g = guard(validate=False, models={"m": ModelFacts(vocab_size=1000)}, max_chars_per_token=1)
    assert untouched(g, {"model": "m", "prompt": "x" * 50000})


@pytest.mark.parametrize(("path", "body", "param"), [
    (CHAT, long_chat(300, echo=True), "echo"),      # chat's echo: top_logprobs, 0 absent
    (CHAT, long_chat(300, echo="yes", top_logprobs="2", logprobs=True), "echo"),
    (COMPLETIONS, {"prompt": [1] * 300, "prompt_logprobs": "1"}, "prompt_logprobs"),
    (COMPLETIONS, {"prompt": "x" * 300, "echo": 1, "logprobs": 0}, "echo")])
def test_prompt_logprobs_past_the_memory_bound_are_refused(path, body, param):
    g = guard(validate=False, max_chars_per_token=1, max_prompt_logprobs_bytes=2**20)
    outcome = admit(g, {"model": "m", **body} if "model" not in body else body, path)
    assert rejected_by(outcome, "amp-prompt-logprobs-memory")
    assert outcome.rejection.param == param
    assert "000 bytes, more than 1048576" in outcome.rejection.message


@pytest.mark.parametrize(("path", "body"), [
    (CHAT, long_chat(300)),                                           # no echo
    (CHAT, long_chat(200, echo=True)),                                # 800000 bytes
    (COMPLETIONS, {"prompt": [1] * 300, "echo": True}),               # no logprobs asked
    (COMPLETIONS, {"prompt": [1] * 300, "prompt_logprobs": 1, "truncate_prompt_tokens": 100}),
    (COMPLETIONS, {"prompt": [1] * 300, "echo": False, "logprobs": 1})])
def test_prompt_logprobs_within_the_bound_or_not_asked_pass(path, body):
    g = guard(validate=False, max_chars_per_token=1, max_prompt_logprobs_bytes=2**20)
    assert untouched(g, {"model": "m", **body} if "model" not in body else body, path)
