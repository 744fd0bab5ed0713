"""Every value judged as vLLM reads it (pydantic's lax mode): a killer spelled `0`, `0.0` or
`"false"` is the same killer; a limit spelled `"65"` or `65.0` is the same limit. Rules must
hold with validation off too (and in dry run), so they are tested without it."""

from __future__ import annotations

import copy

import orjson
import pytest

from warden.config.schema import BackendSpec, GuardSpec, ModelFacts, TimeoutsSpec, ValidationSpec
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.guard.validate import Validator

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
OLD = "0.11.0"
FACTS = {"m": ModelFacts(vocab_size=1000, max_model_len=32768)}


def chat(**extra) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def completion(**extra) -> dict:
    return {"model": "m", "prompt": "hi", **extra}


def unvalidated() -> Guard:
    return Guard(GuardSpec(models=FACTS, validation=ValidationSpec(enabled=False)))


def admit(guard: Guard, body: dict, path: str = CHAT):
    backend = Backend(BackendSpec(name="b", url="http://127.0.0.1:9", vllm_version=OLD),
                      TimeoutsSpec())
    return guard.judge(path, "m", body, orjson.dumps(body), [backend])


# (rule, endpoint, a killer in a lax spelling, what normalizing makes of it, None: rejected)
LAX_KILLERS = [
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"json_object": 0}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"json_object": 0.0}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"json_object": "false"}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"json_object": "off"}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"regex": ""}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"choice": []}), chat()),
    ("so-falsy-constraint", CHAT, chat(structured_outputs={"json": {}}), chat()),
    # vLLM 0.11 builds structured outputs from the deprecated guided_* fields
    ("so-falsy-constraint", CHAT, chat(guided_grammar=""), chat()),
    ("so-falsy-constraint", CHAT, chat(guided_json="", guided_whitespace_pattern=" "), chat()),
    ("so-no-constraint", CHAT, chat(guided_whitespace_pattern=" "), chat()),
    ("so-falsy-constraint", COMPLETIONS, completion(structured_outputs={"json_object": "0"}),
     completion()),
    ("amp-sequences", CHAT, chat(n="65"), None),
    ("amp-sequences", CHAT, chat(n=65.0), None),
    ("amp-sequences", COMPLETIONS, completion(best_of="500"), None),
    ("amp-sequences", CHAT, chat(n=64, max_tokens=1, max_completion_tokens=100000), None),
    ("amp-sequences", CHAT, chat(n=64, max_completion_tokens=0), None),  # 0.11: absent
    ("amp-logprobs", CHAT, chat(logprobs=True, top_logprobs="21"), None),
    ("amp-logprobs", CHAT, chat(logprobs=True, top_logprobs=-1), None),  # the vocabulary
    ("amp-logprobs", COMPLETIONS, completion(prompt_logprobs=-1.0), None),
    ("amp-logprobs", COMPLETIONS, completion(prompt_logprobs="-1"), None),
    ("amp-logprobs", COMPLETIONS, completion(logprobs=-1), None),
    ("tok-stop-token-ids-oov", CHAT, chat(stop_token_ids=[2, "151645"]), None),
    ("tok-allowed-token-ids-oov", CHAT, chat(allowed_token_ids=[1, 1000.0]), None),
    ("tok-prompt-ids-oov", COMPLETIONS, completion(prompt=[1.0, 5000.0]), None),
    ("tok-prompt-ids-oov", COMPLETIONS, completion(prompt=[[1], ["5000"]]), None),
    ("tok-logit-bias-oov", CHAT, chat(logit_bias={"1_000": 5}), None),  # int("1_000")
    ("tok-logit-bias-oov", CHAT, chat(logit_bias={" 5000": 5}), None),
]


@pytest.mark.parametrize(("rule_id", "path", "killer", "made"), LAX_KILLERS)
def test_a_killer_in_a_lax_spelling_is_caught(rule_id, path, killer, made):
    body = copy.deepcopy(killer)
    outcome = admit(unvalidated(), body, path)
    assert outcome is not None and any(n.endswith(rule_id) for n in outcome.notes), \
        outcome and outcome.notes
    if made is None:
        assert outcome.rejection is not None and outcome.rejection.code == "rejected_by_guard"
    else:
        assert outcome.rejection is None and body == made


@pytest.mark.parametrize("body", [
    chat(structured_outputs={"json_object": "true"}),
    chat(structured_outputs={"json_object": 1}),
    chat(structured_outputs={"choice": ["a"]}, n="4", max_tokens="16"),
    chat(logprobs="true", top_logprobs="20", stop_token_ids=["2", 999.0]),
    chat(guided_regex="[a-z]+", guided_whitespace_pattern=" "),
    completion(prompt=["5000", "text"], max_tokens=0, echo=True, n=8),
])
def test_their_legitimate_lax_neighbours_pass(body):
    untouched = copy.deepcopy(body)
    assert admit(unvalidated(), untouched, CHAT if "messages" in body else COMPLETIONS) is None
    assert untouched == body


@pytest.mark.parametrize(("path", "body", "param"), [
    (CHAT, chat(structured_outputs={"json_object": 0}), "structured_outputs.json_object"),
    (CHAT, chat(structured_outputs={"json_object": "false"}), "structured_outputs.json_object"),
    (CHAT, chat(structured_outputs={"json": 0}), "structured_outputs.json"),
    (CHAT, chat(structured_outputs={"choice": ["a", 1]}), "structured_outputs.choice[1]"),
    (CHAT, chat(max_tokens=0), "max_tokens"),
    (CHAT, chat(max_completion_tokens=0), "max_completion_tokens"),
    (COMPLETIONS, completion(max_tokens=0), "max_tokens"),
    (COMPLETIONS, completion(max_tokens=0, echo=False), "max_tokens"),
])
def test_the_validator_refuses_what_vllm_would_read_otherwise(path, body, param):
    problem = Validator(ValidationSpec()).problem(path, body)
    assert problem is not None and problem.param == param and problem.status == 400


def test_max_tokens_zero_is_echo_only_scoring_on_completions():
    body = completion(max_tokens=0, echo=True, logprobs=1)
    assert Validator(ValidationSpec()).problem(COMPLETIONS, body) is None


def any_of(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def tool(parameters: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": parameters}}


@pytest.mark.parametrize(("body", "param"), [
    # the engine compiles a schema given as JSON text as it compiles the object
    (chat(structured_outputs={"json": orjson.dumps(any_of(5)).decode()}),
     "structured_outputs.json"),
    (chat(guided_json=orjson.dumps(any_of(5)).decode()), "guided_json"),
    (chat(guided_json="[" * 1000 + "]" * 1000), "guided_json"),  # past Python's recursion
    # and a forced tool call compiles the tools' parameters
    (chat(tools=[tool(any_of(5))], tool_choice={"type": "function", "function": {"name": "f"}}),
     "tools[0].function.parameters"),
    (chat(tools=[tool(any_of(4))], tool_choice="required"), "tools"),  # one more anyOf
])
def test_a_schema_the_engine_compiles_is_judged_however_it_is_given(body, param):
    outcome = admit(unvalidated(), body)
    assert outcome is not None and outcome.rejection is not None, outcome
    assert outcome.rejection.param == param and "so-schema-too-complex" in \
        outcome.rejection.message


@pytest.mark.parametrize("body", [
    chat(tools=[tool(any_of(5))], tool_choice="auto"),  # not forced: nothing compiled
    chat(tools=[tool(any_of(3))], tool_choice="required"),
    chat(structured_outputs={"json": orjson.dumps(any_of(3)).decode()}),
])
def test_schemas_within_bounds_pass(body):
    assert admit(unvalidated(), body) is None
