"""The sampling, prompt and token-id rules: each source's crashing body is caught, however
vLLM's lax parsing lets it be spelled; its nearest legitimate neighbours pass untouched; and
no JSON value anywhere makes a rule raise."""

from __future__ import annotations

import copy

import orjson
import pytest

from warden.config.schema import (
    BackendSpec,
    GuardLimitsSpec,
    GuardSpec,
    ModelFacts,
    TimeoutsSpec,
    ValidationSpec,
)
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.guard.rule import RuleContext
from warden.guard.rules_resources import RESOURCE_RULES
from warden.guard.rules_sampling import SAMPLING_RULES
from warden.guard.rules_tokens import TOKEN_ID_RULES

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
FACTS = {"m": ModelFacts(vocab_size=1000, max_model_len=2048)}
OFF = ValidationSpec(enabled=False)
_ports = iter(range(30000, 40000))


def backend(version: str | None = "0.11.0", name: str | None = None) -> Backend:
    port = next(_ports)
    return Backend(BackendSpec(name=name or f"b{port}", url=f"http://127.0.0.1:{port}",
                               vllm_version=version), TimeoutsSpec())


def guard(validate: bool = True, models=FACTS, **limits) -> Guard:
    return Guard(GuardSpec(models=models, limits=GuardLimitsSpec(**limits),
                           validation=ValidationSpec(enabled=validate)))


def admit(g: Guard, body: dict, path: str = COMPLETIONS, version: str | None = "0.11.0",
          backends: list[Backend] | None = None):
    return g.judge(path, "m", body, orjson.dumps(body), backends or [backend(version)])


def rejected_by(outcome, rule_id: str) -> bool:
    return (outcome is not None and outcome.rejection is not None
            and f"rejected {rule_id}" in outcome.notes)


def untouched(g: Guard, body: dict, path: str = COMPLETIONS, version: str = "0.11.0") -> bool:
    copied = copy.deepcopy(body)
    return admit(g, copied, path, version) is None and copied == body


# -- top_k ---------------------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [9999999, "9999999", 9999999.0, " 9_999_999 ", 1001])
def test_a_top_k_past_the_vocabulary_becomes_the_vocabulary(top_k):
    # torch-spyre/sendnn-inference#542's reproducer, with the top_k spelled every way
    body = {"model": "m", "prompt": "1 2 3 4 5 ", "max_tokens": 128, "temperature": 1.0,
            "top_k": top_k}
    outcome = admit(guard(validate=False), body)
    assert outcome.notes == ["normalized samp-top-k-past-vocab"] and body["top_k"] == 1000


@pytest.mark.parametrize("top_k", [1000, 999, 40, 1, 0, -1, None, True, "abc", [], {}])
def test_top_k_within_the_vocabulary_or_disabled_is_untouched(top_k):
    assert untouched(guard(validate=False), {"model": "m", "prompt": "x", "top_k": top_k})


def test_top_k_is_left_alone_when_the_vocabulary_is_unknown():
    assert untouched(guard(models={}), {"model": "m", "prompt": "x", "top_k": 10**9})


# -- max_tokens ----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "field", "value"), [
    (COMPLETIONS, "max_tokens", 0), (COMPLETIONS, "max_tokens", "0"),
    (COMPLETIONS, "max_tokens", 0.0), (COMPLETIONS, "max_tokens", False),
    (CHAT, "max_tokens", -1), (CHAT, "max_tokens", " -5 "),
    (CHAT, "max_completion_tokens", -1), (CHAT, "max_completion_tokens", "-2")])
def test_an_output_limit_below_one_is_refused_without_validation(path, field, value):
    body = {"model": "m", field: value,
            **({"prompt": "x"} if path == COMPLETIONS else {"messages": [{"role": "user",
                                                                          "content": "x"}]})}
    outcome = admit(guard(validate=False), body, path)
    assert rejected_by(outcome, "samp-max-tokens-below-one")
    assert outcome.rejection.param == field


@pytest.mark.parametrize(("path", "body"), [
    (COMPLETIONS, {"prompt": "x", "max_tokens": 0, "echo": True}),   # the prompt scored
    (COMPLETIONS, {"prompt": "x", "max_tokens": "0", "echo": "true"}),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 1}),
    (COMPLETIONS, {"prompt": "x", "max_tokens": None}),
    (CHAT, {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 0}),
    (CHAT, {"messages": [{"role": "user", "content": "x"}], "max_tokens": [0]}),
])
def test_the_zeros_vllm_takes_pass(path, body):
    assert untouched(guard(validate=False), {"model": "m", **body}, path)


def test_with_validation_on_the_validator_refuses_it_and_the_rule_is_not_built():
    g = guard()
    assert "samp-max-tokens-below-one" not in {rule.id for rule in g.index.rules}
    outcome = admit(g, {"model": "m", "prompt": "x", "max_tokens": -1})
    assert outcome.rejection is not None and outcome.notes == ["rejected schema max_tokens"]


# -- empty prompts -------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "field", "value"), [
    (COMPLETIONS, "prompt", [""]),   # vllm-project/vllm#7746's reproducer
    (COMPLETIONS, "prompt", ""), (COMPLETIONS, "prompt", []), (COMPLETIONS, "prompt", [[]]),
    (COMPLETIONS, "prompt", ["a", ""]), (EMBEDDINGS, "input", ""),
    (EMBEDDINGS, "input", [[1], []])])
def test_an_empty_prompt_goes_only_to_versions_that_refuse_it(path, field, value):
    body = {"model": "m", field: value, "max_tokens": 20, "temperature": 0}
    g = guard(validate=False)
    old, new = backend("0.5.4", "old"), backend("0.5.5", "new")
    outcome = g.judge(path, "m", copy.deepcopy(body), orjson.dumps(body), [old, new])
    assert outcome.rejection is None and outcome.only == {"new"}
    assert rejected_by(admit(g, copy.deepcopy(body), path, "0.5.4"), "prompt-empty")
    assert untouched(g, body, path, "0.11.0")


@pytest.mark.parametrize("prompt", [" ", [0], [[1], [2]], ["a", "b"], None, 5, {}, [None]])
def test_a_prompt_with_something_in_it_passes_old_versions(prompt):
    assert untouched(guard(validate=False), {"model": "m", "prompt": prompt}, version="0.5.4")


@pytest.mark.parametrize("flag", [False, "false", 0, "off"])
def test_no_messages_without_a_generation_prompt_is_refused(flag):
    body = {"model": "m", "messages": [], "add_generation_prompt": flag}
    outcome = admit(guard(validate=False), body, CHAT)
    assert rejected_by(outcome, "chat-no-messages") and outcome.rejection.param == "messages"


@pytest.mark.parametrize("body", [
    {"messages": [], "add_generation_prompt": True},
    {"messages": [{"role": "assistant", "content": "Hi"}], "add_generation_prompt": False},
    {"messages": None, "add_generation_prompt": False},
    {"messages": [], "add_generation_prompt": "maybe"}])
def test_a_conversation_to_continue_passes(body):
    assert untouched(guard(validate=False), {"model": "m", **body}, CHAT)


# -- echo in streams -----------------------------------------------------------------------

def test_a_streamed_echo_goes_only_to_versions_that_serve_it():
    # vllm-project/vllm#2703's reproducer (reported on 0.6.6.post1)
    body = {"model": "m", "prompt": "Warsaw is", "top_p": 1.0, "max_tokens": 20,
            "temperature": 1.0, "logprobs": 1, "echo": True, "stream": True}
    g = guard()
    old, new = backend("0.6.6.post1", "old"), backend("0.9.2", "new")
    outcome = g.judge(COMPLETIONS, "m", copy.deepcopy(body), orjson.dumps(body), [old, new])
    assert outcome.only == {"new"} and outcome.notes == ["routed echo-stream"]
    assert rejected_by(admit(g, copy.deepcopy(body), version="0.6.6.post1"), "echo-stream")
    lax = {**body, "echo": "true", "stream": 1}
    lax.pop("logprobs")
    assert rejected_by(admit(guard(validate=False), lax, version="0.9.1"), "echo-stream")


@pytest.mark.parametrize("body", [
    {"prompt": "x", "echo": True, "logprobs": 1},                    # not streamed
    {"prompt": "x", "stream": True, "logprobs": 1},                  # no echo
    {"prompt": "x", "echo": True, "stream": True, "max_tokens": 0},  # the prompt only
    {"prompt": "x", "echo": False, "stream": True},
])
def test_echo_or_stream_alone_passes_old_versions(body):
    assert untouched(guard(), {"model": "m", **body}, version="0.9.1")


def test_chat_echo_in_a_stream_is_not_the_completions_path():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "echo": True,
            "stream": True}
    assert untouched(guard(), body, CHAT, "0.9.1")


# -- truncate_prompt_tokens ----------------------------------------------------------------

@pytest.mark.parametrize("value", [-2, "-2", -100, 2049, "4096", 2049.0])
def test_a_truncation_vllm_refuses_is_refused(value):
    body = {"model": "m", "prompt": "x", "truncate_prompt_tokens": value}
    outcome = admit(guard(validate=False), body)
    assert rejected_by(outcome, "trunc-prompt-tokens-range")
    assert outcome.rejection.param == "truncate_prompt_tokens"


@pytest.mark.parametrize("value", [1, 2047, "2047", None, "x", [], {}])
def test_a_truncation_vllm_takes_passes(value):
    assert untouched(guard(validate=False),
                     {"model": "m", "prompt": [5, 6], "truncate_prompt_tokens": value})


@pytest.mark.parametrize(("value", "max_tokens", "made"), [
    (-1, None, 2047), (2048, None, 2047), ("2048", 10, 2038), (2040, "16", 2032),
    (-1, 2048, None)])  # (no room can be made: vLLM refuses max_tokens past the context)
def test_a_truncation_that_leaves_the_output_no_room_leaves_it_some(value, max_tokens, made):
    # vllm-project/vllm#23683: truncating to the whole context killed the V1 engine
    body = {"model": "m", "prompt": [5, 6], "truncate_prompt_tokens": value,
            **({} if max_tokens is None else {"max_tokens": max_tokens})}
    outcome = admit(guard(validate=False), body)
    if made is None:
        assert outcome is None
    else:
        assert outcome.notes == ["normalized trunc-prompt-no-room"]
        assert body["truncate_prompt_tokens"] == made
    assert untouched(guard(validate=False), {**body, "truncate_prompt_tokens": 100})


def test_without_a_context_length_only_the_sign_is_judged():
    g = guard(validate=False, models={"m": ModelFacts(vocab_size=1000)})
    assert untouched(g, {"model": "m", "prompt": "x", "truncate_prompt_tokens": 10**6})
    assert admit(g, {"model": "m", "prompt": "x", "truncate_prompt_tokens": -3}).rejection


# -- token ids in the other fields ---------------------------------------------------------

@pytest.mark.parametrize(("path", "field", "value"), [
    (CHAT, "logprob_token_ids", [5, 1000]), (COMPLETIONS, "logprob_token_ids", ["1000"]),
    ("/generative_scoring", "label_token_ids", [1, -1]),
    ("/inference/v1/generate", "token_ids", [1, 2, 151645]),
    ("/detokenize", "tokens", [2**63]),          # vllm-project/vllm#34468's value
    ("/derender", "prompt_token_ids", [[1], [1000.0]])])
def test_an_out_of_vocabulary_id_in_any_id_field_is_refused(path, field, value):
    outcome = admit(guard(validate=False), {"model": "m", field: value}, path)
    assert rejected_by(outcome, "tok-other-ids-oov") and outcome.rejection.param == field


@pytest.mark.parametrize(("field", "value"), [
    ("logprob_token_ids", [0, 999]), ("tokens", [999.0, "5"]), ("token_ids", [[1], [2]]),
    ("tokens", "abc"), ("tokens", {}), ("prompt_token_ids", [None, {}, [None]])])
def test_ids_in_the_vocabulary_or_not_ids_at_all_pass(field, value):
    assert untouched(guard(validate=False), {"model": "m", field: value}, "/detokenize")


# -- every JSON value anywhere -------------------------------------------------------------

ODD = [None, True, False, 0, -1, 2**70, 1.5, float("nan"), "", "x", " 7 ", [], [None], [[]],
       [{}], {}, {"a": []}, [[[[]]]], [1, "2", None, [3]], [{"role": []}],
       [{"role": "user", "content": {"text": 1}}], [{"content": [None, {"text": 5}]}]]
RULES = (*TOKEN_ID_RULES, *SAMPLING_RULES, *RESOURCE_RULES)
FIELDS = sorted({key for rule in RULES for key in rule.keys}
                | {"prompt", "input", "messages", "echo", "stream", "logprobs",
                   "top_logprobs", "max_tokens", "truncate_prompt_tokens"})


@pytest.mark.parametrize("value", ODD, ids=repr)
def test_no_rule_raises_on_any_value_in_any_field(value):
    facts = ModelFacts(vocab_size=1000, max_model_len=8, special_tokens=["<|x|>"])
    for path in (CHAT, COMPLETIONS, "/detokenize"):
        ctx = RuleContext(path, facts, GuardLimitsSpec(max_chars_per_token=1))
        for field in FIELDS:
            for body in ({field: value}, {field: value, "echo": True, "prompt": value},
                         {field: value, "messages": value, "stream": "1"}):
                for rule in RULES:
                    finding = rule.find(copy.deepcopy(body), ctx)
                    assert finding is None or (isinstance(finding.message, str) and
                                               isinstance(finding.param, str | None))
                    if finding is not None and rule.can_fix:
                        rule.apply_fix(copy.deepcopy(body), ctx)
        # the whole guard, every field at once, in a body large and marked enough for all
        g = Guard(GuardSpec(models={"m": facts}, validation=OFF))
        outcome = g.judge(path, "m", {field: value for field in FIELDS}, b"<" * 40000,
                          [backend("0.5.0")])
        assert outcome is None or outcome.notes
