"""The crash triggers against the requests measured to kill real vLLM (../shared/vllm)."""

from __future__ import annotations

import pytest

from warden.sim.crashes import TRIGGERS, default_triggers, first_match

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
