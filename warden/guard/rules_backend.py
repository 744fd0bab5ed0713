"""Structured-output backends: a request that picks its own, and a request form one backend
cannot build.

`guided_decoding_backend` let a request override the server's backend (vLLM's chat and
completions requests until the guided_* fields went in 0.12; V1 engines refuse a value that
differs from their own). With it a client picked outlines, whose compiled grammars filled an
unbounded cache on disk (CVE-2025-29770, before 0.8.0) and hung a server on a plain
guided_choice (vllm-project/vllm#11289), or xgrammar, whose in-memory cache grew without
bound (GHSA-hf3c-wxg2-49q9, before 0.8.4). Dropped, the request runs on the backend the
operator configured; on a request decoded under no grammar it selects nothing and is left.
It is the only request-level selector found in vLLM's request models: the
`structured_outputs` object that replaced the guided_* fields keeps its backend private
(`_backend`, not read from a request); a `backend` or `_backend` key in it is dropped all the
same, since no version needs it and vLLM ignores it where it does not read it.

The outlines backend of vLLM's V1 engine cannot build `json_object` requests and raised in
the engine's grammar thread (vllm-project/vllm#4070): for models whose backend is outlines
(`guard.models.*.structured_output_backend`), `{"type": "json_object"}` becomes the JSON
schema of any object, which asks for the same outputs.
"""

from __future__ import annotations

from warden.guard.lax import lax_bool
from warden.guard.rule import NORMALIZE, Finding, Rule, RuleContext
from warden.guard.rules_constraints import constrained
from warden.guard.rules_regex import backend

_ANY_OBJECT = {"type": "object"}
_CONSTRAINTS = ("json", "regex", "choice", "grammar", "structural_tag")
_SELECTORS = ("backend", "_backend")


def _backend_override(body: dict, ctx: RuleContext) -> Finding | None:
    if not constrained(body):
        return None
    if body.get("guided_decoding_backend") is not None:
        return Finding("guided_decoding_backend picks the structured-output backend",
                       "guided_decoding_backend")
    outputs = body.get("structured_outputs")
    for key in _SELECTORS:
        if isinstance(outputs, dict) and outputs.get(key) is not None:
            return Finding(f"structured_outputs.{key} picks the structured-output backend",
                           f"structured_outputs.{key}")
    return None


def _drop_backend_override(body: dict) -> None:
    body.pop("guided_decoding_backend", None)
    outputs = body.get("structured_outputs")
    if isinstance(outputs, dict):
        for key in _SELECTORS:
            outputs.pop(key, None)


def _json_object_format(body: dict) -> bool:
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_object"


def _json_object_outputs(body: dict) -> dict | None:
    """`structured_outputs` when its one constraint is json_object (true as vLLM reads it)."""
    outputs = body.get("structured_outputs")
    if not isinstance(outputs, dict) or lax_bool(outputs.get("json_object")) is not True:
        return None
    return None if any(outputs.get(field) is not None for field in _CONSTRAINTS) else outputs


def _json_object_on_outlines(body: dict, ctx: RuleContext) -> Finding | None:
    if backend(ctx.facts) != "outlines":
        return None
    if _json_object_format(body):
        return Finding('response_format {"type": "json_object"} on the outlines backend',
                       "response_format")
    if _json_object_outputs(body) is not None:
        return Finding("structured_outputs.json_object on the outlines backend",
                       "structured_outputs.json_object")
    return None


def _to_any_object_schema(body: dict) -> None:
    if _json_object_format(body):
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "json_object", "schema": dict(_ANY_OBJECT)}}
    outputs = _json_object_outputs(body)
    if outputs is not None:
        del outputs["json_object"]
        outputs["json"] = dict(_ANY_OBJECT)


BACKEND_RULES: tuple[Rule, ...] = (
    Rule("so-backend-override",
         "a request that picks its own structured-output backend (`guided_decoding_backend`, "
         "or a `backend` inside `structured_outputs`)",
         "CVE-2025-29770 / GHSA-mgrm-fgjv-mhv8 (outlines' unbounded cache on disk, before "
         "0.8.0), vllm-project/vllm#11289 (guided_choice on a request-picked outlines hung "
         "0.6.5), GHSA-hf3c-wxg2-49q9 (xgrammar's unbounded cache in memory, before 0.8.4)",
         None, NORMALIZE, frozenset({"guided_decoding_backend", "structured_outputs"}),
         _backend_override,
         _drop_backend_override, remedy="drop it: the server's configured backend is used"),
    Rule("rf-json-object-outlines",
         'response_format `{"type": "json_object"}` (or `structured_outputs.json_object`) '
         "for a model whose structured-output backend is outlines",
         "vllm-project/vllm#4070 ('Invalid request type for Outlines backend (JSON_OBJECT)' "
         "raised in the engine: EngineDeadError; not fixed)", None, NORMALIZE,
         frozenset({"response_format", "structured_outputs"}), _json_object_on_outlines,
         _to_any_object_schema,
         remedy='ask for the JSON schema `{"type": "object"}` instead: the same outputs'),
)
