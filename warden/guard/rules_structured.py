"""Structured outputs and guided decoding: empty, contradictory or uncompilable constraints,
and schemas too complex to compile in bounded time.

vLLM 0.11 killed EngineCore on a constraint that was present but meant nothing (seed 001);
0.24 still did on two of them; 0.26+ is fixed (measured, ../shared/vllm/README.md). Where the
request is valid OpenAI the rule normalizes (an empty constraint is no constraint); where it
cannot mean anything, it rejects.
"""

from __future__ import annotations

import re

from warden.guard.rule import NORMALIZE, REJECT, Finding, Rule, RuleContext

_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
_COMBINATORS = ("anyOf", "oneOf", "allOf")


def _outputs(body: dict) -> dict | None:
    value = body.get("structured_outputs")
    return value if isinstance(value, dict) else None


def _no_constraint(body: dict, ctx: RuleContext) -> Finding | None:
    outputs = body.get("structured_outputs")
    if outputs is None and "structured_outputs" not in body:
        return None
    if outputs is None or (isinstance(outputs, dict)
                           and all(outputs.get(f) is None for f in _CONSTRAINTS)):
        return Finding("structured_outputs carries no constraint", "structured_outputs")
    return None


def _drop_structured_outputs(body: dict) -> None:
    body.pop("structured_outputs", None)


def _falsy(outputs: dict) -> list[str]:
    """Fields present but meaning nothing: json_object false, empty json/grammar/tag."""
    return [f for f in ("json_object", "json", "grammar", "structural_tag")
            if f in outputs and outputs[f] is not None
            and (outputs[f] is False or outputs[f] == "" or outputs[f] == {})]


def _falsy_constraint(body: dict, ctx: RuleContext) -> Finding | None:
    outputs = _outputs(body)
    if outputs is None:
        return None
    fields = _falsy(outputs)
    if not fields:
        return None
    return Finding(f"structured_outputs.{fields[0]} is present but empty or false",
                   f"structured_outputs.{fields[0]}")


def _drop_falsy(body: dict) -> None:
    outputs = _outputs(body)
    if outputs is None:
        return
    for field in _falsy(outputs):
        del outputs[field]
    if all(outputs.get(f) is None for f in _CONSTRAINTS):
        del body["structured_outputs"]


def _bad_regex(body: dict, ctx: RuleContext) -> Finding | None:
    for param, value in (("structured_outputs.regex", (_outputs(body) or {}).get("regex")),
                         ("guided_regex", body.get("guided_regex"))):
        if isinstance(value, str) and value:
            try:
                re.compile(value)
            except re.error as e:
                return Finding(f"{param} does not compile: {e}", param)
    return None


def _response_format_text(body: dict, ctx: RuleContext) -> Finding | None:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "text":
        return Finding('response_format {"type": "text"}', "response_format")
    return None


def _drop_response_format(body: dict) -> None:
    body.pop("response_format", None)  # text is what a response is without one


def _json_schema_without_schema(body: dict, ctx: RuleContext) -> Finding | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or spec.get("schema") is None:
        return Finding("response_format json_schema needs a schema",
                       "response_format.json_schema.schema")
    return None


def _schemas(body: dict) -> list[tuple[str, object]]:
    """The JSON schemas a request asks the engine to compile, with their parameter names."""
    found: list[tuple[str, object]] = []
    outputs = _outputs(body)
    if outputs is not None and isinstance(outputs.get("json"), dict):
        found.append(("structured_outputs.json", outputs["json"]))
    if isinstance(body.get("guided_json"), dict):
        found.append(("guided_json", body["guided_json"]))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"),
                                                        dict):
        found.append(("response_format.json_schema.schema",
                      response_format["json_schema"].get("schema")))
    return found


def _complexity(node: object, depth: int = 0, combinators: int = 0) -> tuple[int, int]:
    """(deepest nesting, most combinators nested on one path) of a schema."""
    deepest, most = depth, combinators
    if isinstance(node, dict):
        for key, value in node.items():
            inner = combinators + (key in _COMBINATORS)
            d, c = _complexity(value, depth + 1, inner)
            deepest, most = max(deepest, d), max(most, c)
    elif isinstance(node, list):
        for value in node:
            d, c = _complexity(value, depth + 1, combinators)
            deepest, most = max(deepest, d), max(most, c)
    return deepest, most


def _schema_too_complex(body: dict, ctx: RuleContext) -> Finding | None:
    limits = ctx.limits
    for param, schema in _schemas(body):
        depth, combinators = _complexity(schema)
        if depth > limits.max_schema_depth:
            return Finding(f"{param} nests {depth} levels deep (limit "
                           f"{limits.max_schema_depth})", param)
        if combinators > limits.max_schema_combinators:
            return Finding(f"{param} nests anyOf/oneOf/allOf {combinators} deep (limit "
                           f"{limits.max_schema_combinators})", param)
    return None


STRUCTURED_OUTPUT_RULES: tuple[Rule, ...] = (
    Rule("so-no-constraint", "structured_outputs present but empty or all null",
         "seed 001; ../shared/vllm/README.md (0.11: EngineCore dies, 'No valid structured "
         "output parameter found')", (0, 12, 0), NORMALIZE,
         frozenset({"structured_outputs"}), _no_constraint, _drop_structured_outputs),
    Rule("so-falsy-constraint",
         'structured_outputs {"json_object": false}, or an empty json, grammar or '
         "structural_tag", "vllm-project/vllm#45346, #47450; measured on 0.11 and 0.24",
         (0, 26, 0), NORMALIZE, frozenset({"structured_outputs"}), _falsy_constraint,
         _drop_falsy),
    Rule("so-bad-regex", "a structured-output regex that does not compile",
         "vllm-project/vllm#17313, #17623; measured on 0.11 (dies) and 0.32 (400)", None,
         REJECT, frozenset({"structured_outputs", "guided_regex"}), _bad_regex),
    Rule("rf-text", 'response_format {"type": "text"}',
         "vllm-project/vllm-ascend#5148; measured on 0.11", (0, 12, 0), NORMALIZE,
         frozenset({"response_format"}), _response_format_text, _drop_response_format),
    Rule("rf-json-schema-without-schema", "response_format json_schema without a schema",
         "measured on 0.11 (dies); invalid OpenAI on every version", None, REJECT,
         frozenset({"response_format"}), _json_schema_without_schema),
    Rule("so-schema-too-complex",
         "a structured-output JSON schema nested too deep, or with anyOf/oneOf/allOf nested "
         "too deep: its grammar compiles in unbounded time, with no timeout",
         "vllm-project/vllm#54003 (xgrammar JSON compile has no timeout; super-exponential "
         "in oneOf depth)", None, REJECT,
         frozenset({"structured_outputs", "guided_json", "response_format"}),
         _schema_too_complex),
)
