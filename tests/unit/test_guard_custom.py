"""Operators' own guard rules: conditions on JSON paths, each action, and the config errors
that stop a rule that cannot work from loading."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from warden.config.schema import BackendSpec, CustomRuleSpec, GuardSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.guard.spec_checks import SPEC_CHECKS

MESSAGES = [{"role": "user", "content": "hi"}]


def backend(name: str, port: int, **spec) -> Backend:
    return Backend(BackendSpec(name=name, url=f"http://127.0.0.1:{port}", **spec),
                   TimeoutsSpec())


def admit(guard: Guard, body: dict, backends=()):
    return guard.judge("/v1/chat/completions", "m", body, orjson.dumps(body), list(backends))


def guard_with(*rules: dict) -> Guard:
    return Guard(GuardSpec(custom=[CustomRuleSpec(**rule) for rule in rules]))


def test_reject_when_every_condition_holds_and_spare_the_rest():
    guard = guard_with({"id": "no-wide-sampling", "action": "reject",
                        "match": {"n": {"gt": 4}, "temperature": {"ge": 1.5}},
                        "message": "n > 4 at high temperature is not allowed here"})
    refused = admit(guard, {"model": "m", "messages": MESSAGES, "n": 8, "temperature": 1.8})
    assert refused.rejection is not None and refused.rejection.param == "n"
    assert "not allowed here" in refused.rejection.message
    assert admit(guard, {"model": "m", "messages": MESSAGES, "n": 8, "temperature": 1.0}) \
        is None
    assert admit(guard, {"model": "m", "messages": MESSAGES, "n": 2, "temperature": 1.8}) \
        is None


def test_normalize_deletes_and_sets_paths():
    guard = guard_with({"id": "tidy", "action": "normalize",
                        "match": {"stream_options.include_usage": {"eq": False}},
                        "delete": ["stream_options"], "set": {"metadata.tidied": True}})
    body = {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": False}}
    outcome = admit(guard, body)
    assert outcome.changed and outcome.notes == ["normalized tidy"]
    assert body == {"model": "m", "messages": MESSAGES, "metadata": {"tidied": True}}


def test_wildcards_lists_and_text_predicates():
    guard = guard_with({"id": "no-developer-role", "action": "reject",
                        "match": {"messages.*.role": {"in": ["developer"]}}},
                       {"id": "no-long-stop", "action": "reject",
                        "match": {"stop.0": {"longer_than": 10, "matches": "^x"}}})
    developer = [{"role": "user", "content": "a"}, {"role": "developer", "content": "b"}]
    assert admit(guard, {"model": "m", "messages": developer}).rejection is not None
    assert admit(guard, {"model": "m", "messages": MESSAGES}) is None
    assert admit(guard, {"model": "m", "messages": MESSAGES, "stop": ["x" * 11]}).rejection
    assert admit(guard, {"model": "m", "messages": MESSAGES, "stop": ["y" * 11]}) is None


def test_a_rule_on_an_absent_field_runs_for_every_body():
    guard = guard_with({"id": "needs-max-tokens", "action": "reject",
                        "match": {"max_tokens": {"exists": False}}})
    assert guard.index.always
    assert admit(guard, {"model": "m", "messages": MESSAGES}).rejection is not None
    assert admit(guard, {"model": "m", "messages": MESSAGES, "max_tokens": 5}) is None


def test_route_sends_matching_requests_to_the_backends_safe_for_the_rule():
    guard = guard_with({"id": "long-to-big", "action": "route",
                        "match": {"max_tokens": {"gt": 4096}}})
    small, big = backend("small", 18001), backend("big", 18002, safe_for=["long-to-big"])
    outcome = admit(guard, {"model": "m", "messages": MESSAGES, "max_tokens": 8000},
                    [small, big])
    assert outcome.only == {"big"} and outcome.rejection is None


@pytest.mark.parametrize(("rule", "error"), [
    ({"id": "x", "action": "reject", "match": {"n": {"bigger": 3}}}, "unknown predicate"),
    ({"id": "x", "action": "reject", "match": {"n": {"gt": "3"}}}, "expected a number"),
    ({"id": "x", "action": "reject", "match": {"a..b": {"eq": 1}}}, "is not a path"),
    ({"id": "x", "action": "reject", "match": {"s": {"matches": "("}}}, "not a regex"),
    ({"id": "x", "action": "normalize", "match": {"n": {"eq": 1}}}, "needs `delete` or"),
    ({"id": "x", "action": "reject", "match": {"n": {"eq": 1}}, "delete": ["n"]},
     "belong to action normalize"),
    ({"id": "Bad Id", "action": "reject", "match": {"n": {"eq": 1}}}, "id"),
])
def test_a_rule_that_cannot_work_does_not_load(rule, error):
    with pytest.raises(ValidationError, match=error):
        CustomRuleSpec.model_validate(rule, context=SPEC_CHECKS)  # (as the config loads it)


def test_custom_ids_must_not_clash_with_builtin_ones():
    with pytest.raises(ValidationError, match="so-bad-regex is used twice"):
        GuardSpec.model_validate({"custom": [{"id": "so-bad-regex", "action": "reject",
                                              "match": {"n": {"eq": 1}}}]},
                                 context=SPEC_CHECKS)
