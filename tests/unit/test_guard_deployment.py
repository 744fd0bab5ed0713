"""Rules by what a backend is: each one's crashing body (the source's own reproducer) routed
or rewritten on a backend known to be affected, its legitimate neighbour untouched; a mixed
fleet keeps serving; a fleet whose deployment is unknown sees nothing routed or refused."""

from __future__ import annotations

import copy

import pytest

from tests.unit.test_guard_rules import CHAT, COMPLETIONS, admit, backend, chat, completion
from warden.config.schema import GuardSpec
from warden.fleet.deployment import Deployment
from warden.guard.guard import Guard

SPECULATIVE = {"speculative_decoding": True}
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
SAY_HELLO = [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": [{"type": "text", "text": "Say hello world 500 times"}]}]

# (rule, endpoint, the backend's version and deployment, crashing body, what enforce makes of
# it (None: routed away, or refused where no other backend serves), its neighbour)
CASES = [
    ("so-spec-decode-route", CHAT, ("0.6.6", SPECULATIVE),  # vllm#9423
     chat(response_format={"type": "json_object"}), None, chat()),
    ("so-spec-decode-route", CHAT, ("0.11.0", {"speculative_method": "eagle3"}),  # #27969
     chat(messages=SAY_HELLO, structured_outputs={"json_object": True}), None,
     chat(messages=SAY_HELLO)),
    ("so-spec-decode-route", CHAT, ("0.26.0", {"speculative_method": "mtp"}),  # #49981
     chat(messages=[{"role": "user", "content": "Say hello"}], tools=WEATHER,
          tool_choice="required"), None,
     chat(messages=[{"role": "user", "content": "Say hello"}], tools=WEATHER,
          tool_choice="auto")),
    ("so-spec-decode-route", CHAT, ("0.6.6", {"speculative_method": "ngram"}),  # #11484
     chat(guided_json={"type": "object"}), None, chat(guided_decoding_backend="xgrammar")),
    ("so-cpu-route", CHAT, ("0.17.0", {"device": "cpu"}),  # vllm#37706
     chat(response_format=JSON_SCHEMA), None, chat()),
    ("so-cpu-route", CHAT, ("0.12.0", {"device": "cpu"}),  # #51283's body, in #37706's range
     chat(response_format=JSON_SCHEMA), None, chat(response_format={"type": "text"})),
    ("spec-penalty-route", CHAT, ("0.19.1", {"speculative_method": "extract_hidden_states"}),
     chat(repetition_penalty=1.1), None, chat(repetition_penalty=1.0)),  # GHSA-83vm-p52w-f9pw
    ("spec-penalty-route", CHAT, ("0.18.0", {"speculative_method": "extract_hidden_states"}),
     chat(presence_penalty=0.5), None, chat(frequency_penalty=0, presence_penalty=0.0)),
    ("skip-special-mistral", CHAT, ("0.7.2", {"tokenizer_mode": "mistral"}),  # vllm#14094
     chat(skip_special_tokens=False), chat(), chat(skip_special_tokens=True)),
    ("skip-special-mistral", COMPLETIONS, ("0.11.0", {"tokenizer_mode": "Mistral"}),
     completion(skip_special_tokens=False), completion(), completion(skip_special_tokens=True)),
]


@pytest.mark.parametrize(("rule_id", "path", "deployed", "crashing", "made", "neighbour"),
                         CASES)
def test_each_rule_acts_on_an_affected_backend_and_spares_the_neighbour(
        rule_id, path, deployed, crashing, made, neighbour):
    version, deployment = deployed
    guard = Guard(GuardSpec())
    affected = backend(version, name="affected", deployment=deployment)
    spare = backend(version, name="spare")  # its deployment unknown: not affected
    body = copy.deepcopy(crashing)
    outcome = admit(guard, body, [affected, spare], path)
    assert outcome is not None and any(note.endswith(rule_id) for note in outcome.notes), \
        outcome and outcome.notes
    if made is None:
        assert outcome.rejection is None and outcome.only == {"spare"}
        assert body == crashing  # routed as it is
        alone = admit(guard, copy.deepcopy(crashing), [affected], path)
        assert alone.rejection is not None and alone.rejection.status == 400
        assert rule_id in alone.rejection.message and alone.rejection.param
    else:
        assert outcome.rejection is None and outcome.changed and body == made
    untouched = copy.deepcopy(neighbour)
    assert admit(guard, untouched, [affected], path) is None
    assert untouched == neighbour


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[2][0]}" for c in CASES])
def test_nothing_happens_where_the_deployment_is_unknown(case):
    """No backend declared or learned: the same crashing bodies pass untouched (no route, no
    rewrite, no refusal), and so they do with no backend to judge at all."""
    _rule_id, path, (version, _deployment), crashing, _made, _neighbour = case
    guard = Guard(GuardSpec())
    body = copy.deepcopy(crashing)
    assert admit(guard, body, [backend(version), backend(None)], path) is None
    assert admit(guard, body, [], path) is None
    assert body == crashing


def test_a_mixed_fleet_sends_grammars_to_the_backend_without_speculation():
    guard = Guard(GuardSpec())
    drafting = backend("0.11.0", name="drafting", deployment={"speculative_method": "ngram"})
    plain = backend("0.11.0", name="plain", deployment={"speculative_decoding": False})
    fleet = [drafting, plain]
    for body in (chat(response_format=JSON_SCHEMA), chat(structured_outputs={"regex": "[a-z]+"}),
                 chat(tools=WEATHER, tool_choice={"type": "function",
                                                  "function": {"name": "get_weather"}}),
                 {"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}}):
        outcome = admit(guard, body, fleet, "/v1/responses" if "input" in body else CHAT)
        assert outcome.only == {"plain"} and outcome.notes == ["routed so-spec-decode-route"]
    assert admit(guard, chat(), fleet) is None  # plain text goes anywhere
    assert admit(guard, chat(tools=WEATHER), fleet) is None  # the model chooses: no grammar


def test_versions_still_bound_a_deployment_rule():
    guard = Guard(GuardSpec())
    body = chat(response_format=JSON_SCHEMA)
    fixed = backend("0.27.0", deployment=SPECULATIVE)
    assert admit(guard, body, [fixed]) is None
    assert admit(guard, body, [backend("0.11.0", deployment={"device": "cpu"})]) is None
    assert admit(guard, body, [backend("0.19.0", deployment={"device": "cpu"})]) is None
    unknown = admit(guard, body, [backend(None, deployment=SPECULATIVE)])
    assert unknown.rejection is not None  # an unknown version is affected, as ever


def test_only_the_hidden_states_method_meets_the_penalty_rule():
    guard = Guard(GuardSpec())
    eagle = backend("0.19.0", deployment={"speculative_method": "eagle"})
    assert admit(guard, chat(frequency_penalty=1.5), [eagle]) is None


def test_safe_for_and_actions_still_apply():
    drafting = backend("0.11.0", name="d", deployment=SPECULATIVE,
                       safe_for=["so-spec-decode-route"])
    assert admit(Guard(GuardSpec()), chat(response_format=JSON_SCHEMA), [drafting]) is None
    dry = Guard(GuardSpec(mode="dry_run"))
    drafting = backend("0.11.0", deployment=SPECULATIVE)
    outcome = admit(dry, chat(response_format=JSON_SCHEMA), [drafting])
    assert outcome.notes == ["would route so-spec-decode-route"] and outcome.only is None


def test_a_declared_fact_wins_over_a_learned_one():
    declared_off = backend("0.11.0", deployment={"speculative_decoding": False})
    declared_off.learn_deployment(Deployment(speculative_decoding=True, device="cpu"))
    assert declared_off.deployment.speculative_decoding is False
    assert declared_off.deployment.device == "cpu"  # learned, where nothing was declared
    assert admit(Guard(GuardSpec()), chat(response_format=JSON_SCHEMA), [declared_off]) is None


def test_values_are_read_as_vllm_reads_them():
    """With validation off, what vLLM's lax parsing makes of a value is what counts."""
    guard = Guard(GuardSpec(validation={"enabled": False}))
    hidden = backend("0.19.0", deployment={"speculative_method": "extract_hidden_states"})
    assert admit(guard, chat(presence_penalty="0.5"), [hidden]).rejection is not None
    assert admit(guard, chat(repetition_penalty="1"), [hidden]) is None
    mistral = backend("0.11.0", deployment={"tokenizer_mode": "mistral"})
    for falsy in ("false", 0, "off"):
        body = completion(skip_special_tokens=falsy)
        assert admit(guard, body, [mistral], COMPLETIONS).changed and body == completion()
    assert admit(guard, completion(skip_special_tokens="yes"), [mistral], COMPLETIONS) is None


@pytest.mark.parametrize("value", [None, 0, 1, "yes", [], {}, "", 1e309])
def test_hostile_values_never_make_a_deployment_rule_raise(value):
    guard = Guard(GuardSpec(validation={"enabled": False}))
    fleet = [backend("0.19.0", name="a", deployment={
        "speculative_method": "extract_hidden_states", "tokenizer_mode": "mistral"}),
        backend("0.11.0", name="b", deployment={"device": "cpu"})]
    for key in ("response_format", "tool_choice", "tools", "structured_outputs", "text",
                "guided_json", "repetition_penalty", "presence_penalty", "skip_special_tokens"):
        admit(guard, chat(**{key: value}), fleet)
        admit(guard, chat(tools=[value], tool_choice={"function": value}), fleet)
        admit(guard, chat(structured_outputs={"json": value, "regex": value}), fleet)
        admit(guard, {"model": "m", "input": "x", "text": {"format": value}}, fleet,
              "/v1/responses")
