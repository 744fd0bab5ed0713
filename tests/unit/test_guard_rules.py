"""Each crash rule: its crashing body is caught (and normalized or rejected), and its nearest
legitimate neighbour passes untouched. Versions and modes decide whether a rule acts."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from warden.config.schema import GuardSpec
from warden.guard.guard import Guard
from warden.guard.rules import RULES

OLD, NEW = "0.11.0", "0.32.0"
MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**extra) -> dict:
    return {"model": "m", "messages": MESSAGES, **extra}


# (rule, crashing body, what enforce makes of it (None: rejected), its nearest neighbour)
CASES = [
    ("so-no-constraint", chat(structured_outputs={}), chat(),
     chat(structured_outputs={"json_object": True})),
    ("so-no-constraint", chat(structured_outputs={"json": None, "regex": None}), chat(),
     chat(structured_outputs={"regex": "[a-z]+"})),
    ("so-falsy-constraint", chat(structured_outputs={"json_object": False}), chat(),
     chat(structured_outputs={"json_object": True})),
    ("so-falsy-constraint", chat(structured_outputs={"json": "", "choice": ["a", "b"]}),
     chat(structured_outputs={"choice": ["a", "b"]}),
     chat(structured_outputs={"json": {"type": "object"}, "choice": ["a", "b"]})),
    ("so-falsy-constraint", chat(structured_outputs={"grammar": ""}), chat(),
     chat(structured_outputs={"grammar": 'root ::= "yes" | "no"'})),
    ("so-bad-regex", chat(structured_outputs={"regex": "\\"}), None,
     chat(structured_outputs={"regex": "\\d+"})),
    ("so-bad-regex", chat(guided_regex="(unclosed"), None, chat(guided_regex="(closed)")),
    ("rf-text", chat(response_format={"type": "text"}), chat(),
     chat(response_format={"type": "json_object"})),
    ("rf-json-schema-without-schema",
     chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), None,
     chat(response_format={"type": "json_schema",
                           "json_schema": {"name": "x", "schema": {"type": "object"}}})),
]


@pytest.mark.parametrize(("rule_id", "crashing", "made", "neighbour"), CASES)
def test_each_rule_catches_its_crash_and_spares_its_neighbour(rule_id, crashing, made,
                                                                neighbour):
    guard = Guard(GuardSpec())
    body = copy.deepcopy(crashing)
    outcome = guard.check(body, [OLD])
    assert any(note.endswith(rule_id) for note in outcome.notes), outcome.notes
    if made is None:
        assert outcome.rejection is not None and outcome.rejection.status == 400
        assert outcome.rejection.code == "rejected_by_guard" and outcome.rejection.param
    else:
        assert outcome.rejection is None and outcome.changed and body == made
    untouched = copy.deepcopy(neighbour)
    spared = guard.check(untouched, [OLD])
    assert spared.notes == [] and not spared.changed and untouched == neighbour


def test_a_rule_acts_only_where_its_versions_run():
    guard = Guard(GuardSpec())
    assert guard.check(chat(structured_outputs={}), [NEW]).notes == []
    assert guard.check(chat(structured_outputs={}), [NEW, OLD]).changed  # one old backend
    assert guard.check(chat(structured_outputs={}), [None]).changed      # version unknown
    assert guard.check(chat(structured_outputs={"regex": "("}), [NEW]).rejection  # all


def test_dry_run_only_notes_and_counts():
    guard = Guard(GuardSpec(mode="dry_run"))
    body = chat(structured_outputs={})
    outcome = guard.check(body, [OLD])
    assert outcome.notes == ["would normalize so-no-constraint"] and not outcome.changed
    assert body == chat(structured_outputs={})
    assert guard.decisions == {("so-no-constraint", "normalize", "dry_run"): 1}


def test_rules_can_be_disabled_and_unknown_ones_are_config_errors():
    guard = Guard(GuardSpec(disable=["so-no-constraint"]))
    assert guard.check(chat(structured_outputs={}), [OLD]).notes == []
    with pytest.raises(ValidationError, match="unknown guard rule no-such-rule"):
        GuardSpec(disable=["no-such-rule"])


def test_every_rule_names_its_source_and_has_a_case():
    assert {rule.id for rule in RULES} == {case[0] for case in CASES}
    assert all(rule.source and rule.description for rule in RULES)
