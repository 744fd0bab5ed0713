"""Requests that kill a vLLM engine, as named triggers (pure: a request body in, yes or no).

Measured on real vLLM (docs/real-vllm.md): on 0.11.0 each of eleven chat requests whose
structured-output parameters are present but carry no usable constraint kills EngineCore
(`ValueError: No valid structured output parameter found`); on 0.24.0 two of them still do;
from 0.26 none. A node's default triggers follow its vLLM version; `--crash-trigger` and
`--no-crash-triggers` override them.

A trigger judges what the engine receives: the structured outputs as vLLM's API server reads
them (pydantic's lax mode: `"json_object": 0` or `"false"` is false there), and nothing of a
request the API server refuses itself (`"json": 0`, two constraints, an empty choice: 400).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from warden.fleet.versions import parse_version
from warden.sim.requests import CONSTRAINTS, BadRequest, StructuredOutputs, structured_outputs_of

# vLLM 0.11 builds structured outputs from these deprecated fields when structured_outputs is
# absent (0.24 ignores them).
_GUIDED = {"json": "guided_json", "regex": "guided_regex", "choice": "guided_choice",
           "grammar": "guided_grammar", "structural_tag": "structural_tag",
           "whitespace_pattern": "guided_whitespace_pattern"}


@dataclass(frozen=True)
class CrashTrigger:
    name: str
    description: str
    matches: Callable[[dict], bool]


def _engine_params(body: dict, guided: bool = False) -> StructuredOutputs | None:
    """The structured outputs the engine receives (None: none, or the API server refuses
    the request first)."""
    if body.get("structured_outputs") is None and guided:
        kwargs = {field: body[key] for field, key in _GUIDED.items() if body.get(key) is not None}
        body = {"structured_outputs": kwargs} if kwargs else body
    try:
        return structured_outputs_of(body)
    except BadRequest:
        return None


def _usable(field: str, value: object) -> bool:
    if field == "json_object":
        return value is True
    if field == "regex":
        if not isinstance(value, str) or not value:
            return False
        try:
            re.compile(value)
        except re.error:
            return False
        return True
    return bool(value)


def _no_usable_constraint(body: dict) -> bool:
    params = _engine_params(body, guided=True)
    return params is not None and not any(
        _usable(field, getattr(params, field)) for field in CONSTRAINTS)


def _falsy_constraint(body: dict) -> bool:
    params = _engine_params(body)
    return params is not None and (params.json_object is False or params.json == "")


def _json_schema_without_schema(body: dict) -> bool:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return False
    spec = response_format.get("json_schema")
    return not isinstance(spec, dict) or spec.get("schema") is None


def _text_response_format(body: dict) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "text"


TRIGGERS = {t.name: t for t in (
    CrashTrigger("structured_outputs_unusable",
                 "structured_outputs (or 0.11's guided_* fields) present with no usable "
                 "constraint ({}, nulls, false, empty strings, an uncompilable regex): "
                 "vLLM 0.11", _no_usable_constraint),
    CrashTrigger("structured_outputs_falsy",
                 'structured_outputs {"json_object": false} or {"json": ""}: vLLM 0.24',
                 _falsy_constraint),
    CrashTrigger("response_format_json_schema_without_schema",
                 "response_format json_schema with no schema (missing or null): vLLM 0.11",
                 _json_schema_without_schema),
    CrashTrigger("response_format_text", 'response_format {"type": "text"}: vLLM 0.11',
                 _text_response_format),
)}


def default_triggers(version: str) -> tuple[str, ...]:
    """The triggers a real engine of `version` has (as measured)."""
    v = parse_version(version)
    if v < (0, 12, 0):
        return ("structured_outputs_unusable", "response_format_json_schema_without_schema",
                "response_format_text")
    if v < (0, 26, 0):
        return ("structured_outputs_falsy",)
    return ()


def first_match(body: dict, names: tuple[str, ...]) -> CrashTrigger | None:
    for name in names:
        trigger = TRIGGERS[name]
        if trigger.matches(body):
            return trigger
    return None
