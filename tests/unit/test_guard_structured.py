"""The structured-output rules that read what a constraint holds: each one's crashing body
(the source's reproducer where it has one) is caught, and its nearest legitimate neighbour
passes untouched. Hostile schemas (deep, wide, odd types, JSON text) never make a rule raise,
and the optional xgrammar check works where xgrammar is installed."""

from __future__ import annotations

import copy
import json
import logging
import threading
import types

import orjson
import pytest

from tests.unit.test_guard_rules import CHAT, FACTS, NEW, OLD, admit, backend, chat
from warden.config.schema import GuardLimitsSpec, GuardSpec, ModelFacts
from warden.guard import rules_xgrammar
from warden.guard.guard import Guard
from warden.guard.patterns import repetition
from warden.guard.rule import RuleContext
from warden.guard.schema_check import Bounds, check


def so(**fields) -> dict:
    return chat(structured_outputs=fields)


def json_schema(schema: object) -> dict:
    return chat(response_format={"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": schema}})


def forced(parameters: object) -> dict:
    return chat(tools=[{"type": "function", "function": {"name": "f",
                                                          "parameters": parameters}}],
                tool_choice="required")


TREE = {"$ref": "#/$defs/node", "$defs": {"node": {  # recursive through properties: legit
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string", "maxLength": 64},
                   "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}
TUPLE = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}],
         "additionalItems": False}
PREFIX = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
          "items": False}

# (rule, crashing body, what enforce makes of it (None: rejected), its neighbour)
CASES = [
    ("so-schema-tuple-items", so(json=TUPLE), so(json=PREFIX), so(json=PREFIX)),
    ("so-schema-tuple-items", so(json=json.dumps(TUPLE)),
     so(json=orjson.dumps(PREFIX).decode()),
     so(json=json.dumps({"type": "array", "items": {"type": "string"},
                         "default": {"items": [1, 2]}}))),
    ("so-schema-invalid", chat(guided_json={"type": "str"}), None,
     chat(guided_json={"type": "string"})),
    ("so-schema-invalid", json_schema({"type": "object", "properties": {"a": 5}}), None,
     json_schema({"type": "object", "properties": {"a": True}})),
    ("so-schema-invalid", so(json={"type": "object", "required": "a"}), None,
     so(json={"type": "object", "required": ["a"]})),
    ("so-schema-invalid", so(json={"type": "array", "minItems": 3, "maxItems": 1}), None,
     so(json={"type": "array", "minItems": 1, "maxItems": 3})),
    ("so-schema-invalid", so(json=json.dumps({"enum": []})), None,
     so(json=json.dumps({"enum": ["a"]}))),
    ("so-schema-invalid", forced({"type": "object", "properties": {
        "n": {"type": "number", "multipleOf": 0}}}), None,
     forced({"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.5}}})),
    ("so-schema-invalid", so(json={"type": "string", "maxLength": -1}), None,
     so(json={"type": "string", "maxLength": 0})),
    ("so-schema-bad-ref", so(json={"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}}),
     None, so(json=TREE)),
    ("so-schema-bad-ref", json_schema({"type": "object", "properties": {
        "a": {"$ref": "#/definitions/missing"}}}), None,
     json_schema({"type": "object", "properties": {"a": {"$ref": "#/definitions/b"}},
                  "definitions": {"b": {"type": "string"}}})),
    ("so-schema-huge-bound", so(json={"type": "object", "properties": {
        "population": {"type": "integer", "minimum": 0, "maximum": 2e19}}}),
     None, so(json={"type": "object", "properties": {
         "population": {"type": "integer", "minimum": 0, "maximum": 20_000_000_000}}})),
    ("so-schema-huge-bound", forced({"type": "object", "properties": {
        "content": {"type": "string", "maxLength": 10_000_000}}}), None,
     forced({"type": "object", "properties": {"content": {"type": "string",
                                                          "maxLength": 100_000}}})),
    ("so-nul", so(regex="\x00"), None, so(regex="[\t\n ]+")),
    ("so-nul", json_schema({"type": "string", "pattern": "\x00abc"}), None,
     json_schema({"type": "string", "pattern": "^[a-z]{2,8}$", "minLength": 2})),
    ("so-nul", so(choice=["yes", "n\x00o"]), None, so(choice=["yes", "no"])),
    ("so-nul", chat(guided_grammar='root ::= "a\x00"'), None,
     chat(guided_grammar='root ::= "a" | "b"')),
    ("so-huge-repeat", so(regex="[a-z]{1,1000000}"), None, so(regex="[a-z]{1,100000}")),
    ("so-huge-repeat", so(regex="((ab){1000}){1000}"), None, so(regex=r"[\w-]{1,64}")),
    ("so-huge-repeat", json_schema({"type": "string", "pattern": "^x{2000000}$"}), None,
     json_schema({"type": "string", "pattern": "^x{20}$"})),
    ("so-huge-repeat", so(grammar="root ::= [0-9]{1,2000000}"), None,
     so(grammar='root ::= "{1,2000000}" [0-9]{1,12}')),
    ("so-many-choices", so(choice=[f"label {i}" for i in range(5000)]), None,
     so(choice=[f"label {i}" for i in range(50)])),
    ("so-many-choices", so(choice=[f"{i:04}" + "x" * 1100 for i in range(1000)]), None,
     so(choice=[f"{i:04}" + "x" * 1000 for i in range(1000)])),
    ("so-huge-grammar", so(grammar="root ::= " + " | ".join(['"aaaa"'] * 200_000)), None,
     so(grammar="root ::= " + " | ".join(['"aaaa"'] * 2000))),
    ("so-falsy-constraint", so(grammar=" \n "), chat(), so(grammar='root ::= "yes"')),
    ("so-min-tokens", chat(max_tokens=96, min_tokens=64, structured_outputs={"json": {
        "type": "object", "properties": {"name": {"type": "string"},
                                         "count": {"type": "integer"}}}}),
     chat(max_tokens=96, structured_outputs={"json": {
         "type": "object", "properties": {"name": {"type": "string"},
                                          "count": {"type": "integer"}}}}),
     chat(max_tokens=96, min_tokens=64)),
    ("so-n-guided", chat(n=2, guided_json={"type": "object"}), None,
     chat(n=2, guided_json=None)),
]


@pytest.mark.parametrize(("rule_id", "crashing", "made", "neighbour"), CASES)
def test_each_rule_catches_its_crash_and_spares_its_neighbour(rule_id, crashing, made,
                                                                neighbour):
    guard = Guard(GuardSpec(models=FACTS, disable=["so-xgrammar-refuses"]))
    body = copy.deepcopy(crashing)
    old = backend("0.6.6" if rule_id == "so-n-guided" else OLD)
    outcome = admit(guard, body, [old])
    assert outcome is not None and any(note.endswith(rule_id) for note in outcome.notes), \
        outcome and outcome.notes
    if made is None:
        assert outcome.rejection is not None and outcome.rejection.status == 400
        assert rule_id in outcome.rejection.message and outcome.rejection.param
    else:
        assert outcome.rejection is None and outcome.changed and body == made
    untouched = copy.deepcopy(neighbour)
    assert admit(guard, untouched, [old]) is None
    assert untouched == neighbour


def test_version_bound_rules_leave_fixed_engines_alone():
    guard = Guard(GuardSpec())
    body = chat(min_tokens=64, structured_outputs={"json": {"type": "object"}})
    assert admit(guard, copy.deepcopy(body), [backend("0.29.0")]) is None
    assert admit(guard, copy.deepcopy(body), [backend("0.28.0")]).changed
    routed = admit(guard, chat(n=2, guided_json={"type": "object"}),
                   [backend("0.6.6", name="old"), backend(NEW, name="new")])
    assert routed.rejection is None and routed.only == {"new"}


def deep(depth: int, key: str) -> object:
    node: object = {"type": "string"}
    for _ in range(depth):
        node = {key: node} if key != "anyOf" else {key: [node]}
    return node


HOSTILE = [deep(200_000, "items"), deep(50_000, "anyOf"), deep(50_000, "not"),
           {"properties": {f"p{i}": {"type": "string"} for i in range(200_000)}},
           {"enum": list(range(1_000_000))}, {"required": ["a"] * 1_000_000},
           [1, 2, 3], 7, "not json", "[[[[", '{"items": ' * 5000 + '{}' + '}' * 5000,
           {"$ref": 5}, {"$ref": "#/" + "9" * 5000}, {"$ref": "#/%ZZ"}, {"type": [[]]},
           {"properties": {"a": {"$ref": "#/properties/a"}}}, {"maxLength": 10 ** 5000},
           {"items": [deep(10_000, "items")] * 100}, {"pattern": "{" * 100_000}]


@pytest.mark.parametrize("schema", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_schemas_never_make_a_rule_raise(schema):
    guard = Guard(GuardSpec(validation={"enabled": False}))  # every rule sees the schema
    for body in (so(json=schema), chat(guided_json=schema), json_schema(schema),
                 forced(schema), chat(min_tokens=5, n=2, guided_json=schema)):
        outcome = guard.judge(CHAT, "m", body, b"{}", [backend("0.6.6")])
        assert outcome is None or outcome.notes


def test_the_walk_is_bounded_and_reports_where():
    problems = check({"type": "object", "properties": {"a/b": {"type": "str"}}},
                     Bounds(max_repetition=10, max_nodes=100))
    assert problems["invalid"].where == "/properties/a~1b/type"
    assert check(deep(1000, "items"), Bounds(10, 100))["bound"].message == \
        "has more than 100 subschemas"
    assert check(TREE, Bounds(100, 100)) == {}


@pytest.mark.parametrize(("pattern", "copies"), [
    ("a{10}b{10}", 10), ("(a{10}){10}", 100), ("((a{10}){10}){10}", 1000),
    (r"\p{L}+", 0), ("[{]{5}", 5), ("x{3,}", 3), ("(a{2}", 2), ("{", 0), ("a{,5}", 0),
    (r"[a\]{9}]{4}", 4), ("a{99999999999999999999999}", 10 ** 18)])
def test_repetition_counts_what_an_automaton_expands(pattern, copies):
    assert repetition(pattern, 10 ** 19) == copies


def test_grammar_repetitions_skip_literals_and_read_lark_counts():
    assert repetition('root ::= "{1000}" x{2,3}', 10 ** 6, grammar=True) == 3
    assert repetition("start: item ~ 5..70", 10 ** 6, grammar=True) == 70


def test_a_rule_context_memo_shares_one_check_per_request():
    from warden.guard.schema_slots import checked
    ctx = RuleContext(CHAT, ModelFacts(), GuardLimitsSpec())
    body = so(json={"type": "str"})
    first = checked(body, ctx)
    assert checked(body, ctx) is first and first[0][1]["invalid"]


# --- The optional xgrammar check ----------------------------------------------------------

def test_without_xgrammar_the_rule_is_absent_and_says_so(monkeypatch, caplog):
    def missing(name):
        raise ImportError(f"No module named {name!r}")
    monkeypatch.setattr(rules_xgrammar.importlib, "import_module", missing)
    with caplog.at_level(logging.DEBUG, logger="warden.guard"):
        guard = Guard(GuardSpec(disable=["so-xgrammar-refuses"]))
    assert "so-xgrammar-refuses" not in {rule.id for rule in guard.index.rules}
    assert "xgrammar cannot be imported" in caplog.text


def fake_xgrammar(convert) -> types.ModuleType:
    module = types.ModuleType("xgrammar")
    module.Grammar = types.SimpleNamespace(from_json_schema=convert, from_regex=convert,
                                           from_ebnf=convert, from_lark=convert)
    return module


def test_a_conversion_that_hangs_is_refused_and_one_that_fails_names_why(monkeypatch):
    release = threading.Event()

    def hang(_):
        release.wait()

    monkeypatch.setattr(rules_xgrammar.importlib, "import_module", lambda _: fake_xgrammar(hang))
    guard = Guard(GuardSpec(limits=GuardLimitsSpec(xgrammar_timeout=0.05)))
    outcome = admit(guard, so(json={"type": "object"}), [backend(NEW)])
    release.set()
    assert "did not compile" in outcome.rejection.message

    def refuse(_):
        raise RuntimeError("[12:00:00] /project/cpp/x.cc:9: no such thing")

    monkeypatch.setattr(rules_xgrammar.importlib, "import_module",
                        lambda _: fake_xgrammar(refuse))
    guard = Guard(GuardSpec())
    outcome = admit(guard, so(regex="a+"), [backend(NEW)])
    assert "does not compile: no such thing" in outcome.rejection.message
    other = Guard(GuardSpec(models={"m": ModelFacts(structured_output_backend="guidance")}))
    assert admit(other, so(regex="a+"), [backend(NEW)]) is None


def test_xgrammar_itself_refuses_what_the_engine_would():
    pytest.importorskip("xgrammar", reason="the optional extra warden[xgrammar] is not "
                        "installed")
    guard = Guard(GuardSpec())
    assert "so-xgrammar-refuses" in {rule.id for rule in guard.index.rules}
    refused = admit(guard, so(json={"type": "string", "minLength": 2.0}), [backend(NEW)])
    assert refused.notes == ["rejected so-xgrammar-refuses"]
    assert "minLength" in refused.rejection.message
    bad_grammar = admit(guard, so(grammar='root ::= "a" |'), [backend(NEW)])
    assert bad_grammar.notes == ["rejected so-xgrammar-refuses"]
    for body in (so(json=TREE), so(json=json.dumps(TREE)), so(regex=r"\d{3}-\d{4}"),
                 so(grammar='root ::= "yes" | "no"'), json_schema(PREFIX),
                 forced({"type": "object", "properties": {"city": {"type": "string"}}})):
        assert admit(guard, copy.deepcopy(body), [backend(NEW)]) is None, body
