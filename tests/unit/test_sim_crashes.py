"""The crash triggers against the requests measured to kill real vLLM (../shared/vllm)."""

from __future__ import annotations

import pytest

from warden.sim.crashes import TRIGGERS, default_triggers, first_match
from warden.sim.requests import BadRequest, check_structured_outputs

NULLS = dict.fromkeys(("json", "regex", "choice", "grammar", "json_object", "structural_tag"))
KILLS_0_11 = [
    {"structured_outputs": {}},
    {"structured_outputs": {"json": None}},
    {"structured_outputs": NULLS},
    {"structured_outputs": {"json_object": False}},
    {"structured_outputs": {"json": ""}},
    {"structured_outputs": {"regex": "\\"}},
    {"structured_outputs": {"grammar": ""}},
    {"structured_outputs": {"structural_tag": ""}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": None}}},
    {"response_format": {"type": "text"}},
]
KILLS_0_24 = [{"structured_outputs": {"json_object": False}},
              {"structured_outputs": {"json": ""}}]
LEGITIMATE = [
    {},
    {"structured_outputs": {"json": {"type": "object"}}},
    {"structured_outputs": {"regex": "[a-z]+"}},
    {"structured_outputs": {"choice": ["yes", "no"]}},
    {"structured_outputs": {"json_object": True}},
    {"response_format": {"type": "json_object"}},
    {"response_format": {"type": "json_schema",
                         "json_schema": {"name": "x", "schema": {"type": "object"}}}},
]


@pytest.mark.parametrize("body", KILLS_0_11)
def test_each_measured_0_11_killer_matches(body):
    assert first_match(body, default_triggers("0.11.0")) is not None


@pytest.mark.parametrize("body", KILLS_0_24)
def test_each_measured_0_24_killer_matches(body):
    assert first_match(body, default_triggers("0.24.0")) is not None


@pytest.mark.parametrize("body", LEGITIMATE)
@pytest.mark.parametrize("version", ["0.11.0", "0.24.0", "0.32.0"])
def test_legitimate_neighbours_never_match(body, version):
    assert first_match(body, default_triggers(version)) is None


def test_0_24_survives_what_killed_0_11_and_0_32_survives_everything():
    survivors = [b for b in KILLS_0_11 if b not in KILLS_0_24]
    assert all(first_match(b, default_triggers("0.24.0")) is None for b in survivors)
    assert default_triggers("0.32.0") == ()


def test_every_trigger_says_where_it_comes_from():
    assert all("vLLM" in t.description for t in TRIGGERS.values())


# vLLM reads structured outputs in pydantic's lax mode: the same killers, other spellings.
LAX_KILLS_0_11 = [
    {"structured_outputs": {"json_object": 0}},
    {"structured_outputs": {"json_object": 0.0}},
    {"structured_outputs": {"json_object": "false"}},
    {"structured_outputs": {"json_object": "off"}},
    {"structured_outputs": {"regex": ""}},
    {"guided_grammar": ""},  # 0.11 builds structured outputs from the guided_* fields
    {"guided_whitespace_pattern": " "},
]
# What vLLM's API server refuses (400) never reaches the engine.
REFUSED = [
    {"structured_outputs": {"json": 0}},
    {"structured_outputs": {"choice": []}},
    {"structured_outputs": {"choice": ["a", 1]}},
    {"structured_outputs": {"json_object": 2}},
    {"structured_outputs": {"json": "", "regex": "a"}},
    {"structured_outputs": "json"},
]


@pytest.mark.parametrize("body", LAX_KILLS_0_11)
def test_a_killer_in_a_lax_spelling_kills_0_11(body):
    assert first_match(body, default_triggers("0.11.0")) is not None


def test_a_false_json_object_in_any_spelling_kills_0_24():
    for spelling in (0, 0.0, "false", "no", "f"):
        body = {"structured_outputs": {"json_object": spelling}}
        assert first_match(body, default_triggers("0.24.0")) is not None, spelling


@pytest.mark.parametrize("body", REFUSED)
def test_what_the_api_server_refuses_is_a_400_not_a_death(body):
    assert first_match(body, default_triggers("0.11.0")) is None
    assert first_match(body, default_triggers("0.24.0")) is None
    with pytest.raises(BadRequest) as refused:
        check_structured_outputs(body)
    assert refused.value.status == 400


@pytest.mark.parametrize("spelling", [True, 1, 1.0, "true", "yes", "on"])
def test_a_true_json_object_in_any_spelling_is_a_constraint(spelling):
    body = {"structured_outputs": {"json_object": spelling}}
    assert all(first_match(body, default_triggers(v)) is None for v in ("0.11.0", "0.24.0"))
