"""The rules on structured-output backends, tool definitions and request parameters: each
one's crashing body (the source's reproducer) is normalized, rejected or routed, its nearest
legitimate neighbour passes untouched, values are read as vLLM reads them (lax), the version
bounds (`since` too) hold, and no hostile body makes any rule raise."""

from __future__ import annotations

import copy

import orjson
import pytest

from tests.unit.test_guard_rules import CHAT, COMPLETIONS, chat, completion
from tests.unit.test_guard_rules import backend as plain_backend
from warden.config.schema import GuardSpec, ModelFacts
from warden.guard.guard import Guard
from warden.guard.rule import REJECT, Rule

EMBEDDINGS = "/v1/embeddings"
ROUTED = "routed"
STORY = [{"role": "user", "content": "Tell me a long story:"}]
POEM = [{"role": "user", "content": "write a poem"},
        {"role": "assistant", "content": "This is a song about vLLM"}]
CHOICES = ["今天天气真好", "明天也是", "后天天气真差"]
UNIQUE = {"type": "object", "properties": {"k0001": {"type": "string"}}}


def backend(version: str | None, **spec):
    """A backend declared to parse tool calls with qwen3_coder (what tool-param-eval needs;
    no other rule here looks at it)."""
    return plain_backend(version, deployment={"tool_call_parser": "qwen3_coder"}, **spec)


def tool(properties: dict) -> list[dict]:
    return [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": properties}}}]


def guard_for(backend_name: str | None = None, **spec) -> Guard:
    facts = ModelFacts(vocab_size=1000, max_model_len=32768,
                       structured_output_backend=backend_name)
    return Guard(GuardSpec(models={"m": facts}, disable=["so-xgrammar-refuses"], **spec))


def admit(guard: Guard, body: dict, backends: list, path: str = CHAT):
    return guard.judge(path, "m", body, orjson.dumps(body), backends)


# (rule, endpoint, the model's backend, an affected version, crashing body, what enforce
#  makes of it (None: rejected; ROUTED: routed, unchanged), its neighbour, a safe version)
CASES = [
    ("so-backend-override", CHAT, None, "0.7.3",
     chat(max_tokens=1, guided_decoding_backend="outlines", guided_json=UNIQUE),
     chat(max_tokens=1, guided_json=UNIQUE), chat(max_tokens=1, guided_json=UNIQUE), None),
    ("so-backend-override", CHAT, None, "0.6.5",
     chat(messages=[{"role": "user", "content": "节约是不是一个好习惯"}], guided_choice=CHOICES,
          guided_decoding_backend="outlines"),
     chat(messages=[{"role": "user", "content": "节约是不是一个好习惯"}], guided_choice=CHOICES),
     chat(messages=[{"role": "user", "content": "节约是不是一个好习惯"}], guided_choice=CHOICES),
     None),
    ("so-backend-override", COMPLETIONS, None, "0.32.0",
     completion(structured_outputs={"regex": "[a-z]+", "backend": "outlines"}),
     completion(structured_outputs={"regex": "[a-z]+"}),
     completion(structured_outputs={"regex": "[a-z]+"}), None),
    ("rf-json-object-outlines", CHAT, "outlines", "0.32.0",
     chat(response_format={"type": "json_object"}),
     chat(response_format={"type": "json_schema", "json_schema": {
         "name": "json_object", "schema": {"type": "object"}}}),
     chat(response_format={"type": "json_schema", "json_schema": {
         "name": "obj", "schema": {"type": "object"}}}), None),
    ("rf-json-object-outlines", COMPLETIONS, "outlines", "0.32.0",
     completion(structured_outputs={"json_object": True}),
     completion(structured_outputs={"json": {"type": "object"}}),
     completion(structured_outputs={"json": {"type": "object"}}), None),
    ("tool-param-eval", CHAT, None, "0.10.0", chat(tools=tool({"x": {}})), ROUTED,
     chat(tools=tool({"x": {"type": "string"}})), "0.10.2"),
    ("tool-param-eval", CHAT, None, "0.10.1", chat(tools=tool({"cmd": {"type": "array"}}),
                                                   tool_choice="auto"), ROUTED,
     chat(tools=tool({"cmd": {"type": "array"}}), tool_choice="required"), "0.9.2"),
    ("reasoning-budget-route", CHAT, None, "0.21.0", chat(thinking_token_budget=16), ROUTED,
     chat(), "0.28.0"),
    ("reasoning-budget-route", CHAT, None, "0.27.1", chat(thinking_token_budget=0), ROUTED,
     chat(thinking_token_budget=-1), "0.20.2"),
    ("ct-continue-echo", CHAT, None, "0.9.0",
     chat(messages=POEM, add_generation_prompt=False, continue_final_message=True, echo=True,
          max_tokens=128), ROUTED,
     chat(messages=POEM, add_generation_prompt=False, continue_final_message=True,
          max_tokens=128), "0.11.0"),
    ("samp-beam-search-route", COMPLETIONS, None, "0.5.5",
     completion(prompt="Hi", use_beam_search=True, best_of=2, temperature=0, max_tokens=10),
     ROUTED, completion(prompt="Hi", temperature=0, max_tokens=10), "0.6.2"),
    ("req-body-request-id", CHAT, None, "0.6.4",
     chat(request_id="id", messages=STORY, max_tokens=1024, min_tokens=1024, temperature=0),
     chat(messages=STORY, max_tokens=1024, min_tokens=1024, temperature=0),
     chat(messages=STORY, max_tokens=1024, min_tokens=1024, temperature=0), None),
    ("req-body-request-id", EMBEDDINGS, None, "0.8.1",
     {"model": "m", "input": "hi", "request_id": "id"}, {"model": "m", "input": "hi"},
     {"model": "m", "input": "hi", "user": "id"}, None),
]


def expect(rule_id: str, path: str, backend_name: str | None, version: str, crashing: dict,
           made: object, neighbour: dict, safe: str | None) -> None:
    """The crashing body is acted on as `made` says, and the neighbour passes untouched."""
    guard = guard_for(backend_name)
    body = copy.deepcopy(crashing)
    outcome = admit(guard, body, [backend(version)], path)
    assert outcome is not None and f"{'rejected' if made in (None, ROUTED) else 'normalized'}" \
        f" {rule_id}" in outcome.notes, outcome and outcome.notes
    if made is None or made == ROUTED:
        assert outcome.rejection is not None and outcome.rejection.status == 400
        assert rule_id in outcome.rejection.message and outcome.rejection.param
        assert body == crashing
    else:
        assert outcome.rejection is None and outcome.changed and body == made
    if made == ROUTED:
        assert safe is not None
        body = copy.deepcopy(crashing)
        routed = admit(guard, body, [backend(version, name="old"), backend(safe, name="new")],
                       path)
        assert routed.notes == [f"routed {rule_id}"] and routed.only == {"new"}
        assert routed.rejection is None and body == crashing
        assert admit(guard, copy.deepcopy(crashing), [backend(safe)], path) is None
    untouched = copy.deepcopy(neighbour)
    assert admit(guard, untouched, [backend(version)], path) is None
    assert untouched == neighbour


@pytest.mark.parametrize(("rule_id", "path", "backend_name", "version", "crashing", "made",
                          "neighbour", "safe"), CASES)
def test_each_rule_catches_its_crash_and_spares_its_neighbour(rule_id, path, backend_name,
                                                                version, crashing, made,
                                                                neighbour, safe):
    expect(rule_id, path, backend_name, version, crashing, made, neighbour, safe)


def test_since_and_before_bound_the_versions_a_rule_applies_to():
    rule = Rule("r", "d", "s", (0, 28, 0), REJECT, frozenset(), lambda b, c: None,
                since=(0, 21, 0))
    assert [rule.applies_to(v) for v in ("0.20.2", "0.21.0", "0.27.9+cpu", "0.28.0", None)] \
        == [False, True, True, False, True]
    lower_only = Rule("r", "d", "s", None, REJECT, frozenset(), lambda b, c: None,
                      since=(0, 10, 0))
    assert [lower_only.applies_to(v) for v in ("0.9.2", "0.10.0", "1.0.0")] == [False, True, True]


def test_a_backend_selector_on_a_request_without_a_grammar_is_left_alone():
    for body in (chat(guided_decoding_backend="xgrammar"),
                 chat(guided_decoding_backend="outlines", tools=tool({}), tool_choice="auto")):
        assert admit(guard_for(), copy.deepcopy(body), [backend("0.7.3")]) is None
    forced = chat(guided_decoding_backend="outlines", tools=tool({"x": {"type": "string"}}),
                  tool_choice="required")
    assert admit(guard_for(), forced, [backend("0.7.3")]).changed
    assert "guided_decoding_backend" not in forced


def test_json_object_is_rewritten_only_where_the_backend_is_known_to_be_outlines():
    body = chat(response_format={"type": "json_object"})
    for backend_name in (None, "xgrammar", "guidance", "auto"):
        assert admit(guard_for(backend_name), copy.deepcopy(body), [backend("0.32.0")]) is None
    lax = guard_for("outlines", validation={"enabled": False})
    body = completion(structured_outputs={"json_object": "yes"})
    assert admit(lax, body, [backend("0.32.0")]).changed
    assert body == completion(structured_outputs={"json": {"type": "object"}})
    for spelling in ("no", 0, None):
        body = completion(structured_outputs={"json_object": spelling, "regex": "a+"})
        assert admit(lax, body, [backend("0.32.0")]) is None
    both = completion(structured_outputs={"json_object": True, "regex": "a"})
    assert admit(lax, both, [backend("0.32.0")]) is None  # (vLLM refuses two constraints)


@pytest.mark.parametrize(("field", "value", "flagged"), [
    ("thinking_token_budget", "16", True), ("thinking_token_budget", 16.0, True),
    ("thinking_token_budget", " -1 ", False), ("thinking_token_budget", "x", False),
    ("use_beam_search", "true", True), ("use_beam_search", 1, True),
    ("use_beam_search", "no", False), ("use_beam_search", 0.0, False),
    ("echo", "yes", True), ("echo", "off", False), ("echo", 1.0, True)])
def test_values_are_read_as_vllm_reads_them(field, value, flagged):
    guard = guard_for(validation={"enabled": False})
    body = chat(**{field: value}) if field != "echo" else \
        chat(messages=POEM, continue_final_message="1", echo=value)
    outcome = admit(guard, body, [backend(None)])
    assert (outcome is not None and outcome.rejection is not None) is flagged


@pytest.mark.parametrize(("spec", "flagged"), [
    ({"type": "string"}, False), ({"type": "integer"}, False), ({"type": "Number "}, False),
    ({"type": "boolean"}, False), ({"type": "enum"}, False), ({"enum": ["a"]}, True),
    ({"type": "object"}, True), ({"type": ["string", "null"]}, True), ({"type": "null"}, True),
    ({"type": "path"}, True), ("string", True)])
def test_tool_parameters_the_parser_converts_itself_pass(spec, flagged):
    outcome = admit(guard_for(), chat(tools=tool({"p": spec})), [backend("0.10.1")])
    assert (outcome is not None) is flagged


def test_tool_parameters_pass_where_the_parser_is_not_declared_qwen3_coder():
    body = chat(tools=tool({"cmd": {"type": "array"}}))
    for unknown in (plain_backend("0.10.1"), plain_backend(None)):
        assert admit(guard_for(), copy.deepcopy(body), [unknown]) is None


HOSTILE = [
    {"guided_decoding_backend": 5}, {"guided_decoding_backend": {"a": []}},
    {"structured_outputs": {"backend": ["x"], "_backend": None}}, {"structured_outputs": "x"},
    {"response_format": "json_object"}, {"response_format": {"type": ["json_object"]}},
    {"structured_outputs": {"json_object": {"a": 1}}}, {"tools": "x"}, {"tools": [1, None]},
    {"tools": [{"function": 5}, {"function": {"parameters": []}}]},
    {"tools": [{"function": {"parameters": {"properties": [1, 2]}}}]},
    {"tools": [{"function": {"parameters": {"properties": {"x": 5, "y": {"type": {}}}}}}]},
    {"tools": [{"parameters": {"properties": {"x": {"type": "list"}}}}], "tool_choice": 5},
    {"thinking_token_budget": []}, {"thinking_token_budget": float("inf")},
    {"thinking_token_budget": "9" * 5000}, {"continue_final_message": {}, "echo": []},
    {"use_beam_search": "maybe"}, {"request_id": {"a": 1}}, {"request_id": None},
]


@pytest.mark.parametrize("extra", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_never_make_a_rule_raise(extra):
    for backend_name in (None, "outlines", "lm-format-enforcer", "guidance"):
        guard = guard_for(backend_name, validation={"enabled": False})
        for path in (CHAT, COMPLETIONS, EMBEDDINGS):
            outcome = guard.judge(path, "m", chat(**extra), b"{}", [backend("0.10.1")])
            assert outcome is None or outcome.notes
