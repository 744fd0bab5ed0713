"""The crash-rule pack: one rule per known way a single request crashes a vLLM engine (pure:
a parsed body in, a decision out).

Each rule names where it comes from and the vLLM versions it applies to, and acts:
`normalize` rewrites the body into its equivalent safe form (preferred where the request is
valid OpenAI: an empty constraint is no constraint), `reject` answers 400 naming the
parameter. A rule sees only a body that carries one of its `keys` (the guard skips the rest
with one set test per request).

Families covered so far: structured outputs and guided decoding. Token-id parameters against
the vocabulary, resource amplifiers, chat-template kwargs and multimodal inputs are not yet.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from warden.fleet.versions import parse_version

NORMALIZE, REJECT = "normalize", "reject"
_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")


@dataclass(frozen=True)
class Finding:
    message: str
    param: str | None


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    source: str                      # the vLLM issue, PR or measurement it comes from
    before: tuple[int, int, int] | None  # applies to vLLM versions below this (None: all)
    action: str                      # NORMALIZE | REJECT
    keys: frozenset[str]             # top-level body keys that can trigger it
    find: Callable[[dict], Finding | None]
    fix: Callable[[dict], None] | None = None  # NORMALIZE: rewrites the body in place

    def applies_to(self, version: str | None) -> bool:
        """Unknown versions are assumed affected: a rule errs on the side of the engine."""
        return self.before is None or version is None or parse_version(version) < self.before


def _outputs(body: dict) -> dict | None:
    value = body.get("structured_outputs")
    return value if isinstance(value, dict) else None


def _no_constraint(body: dict) -> Finding | None:
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


def _falsy_constraint(body: dict) -> Finding | None:
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


def _bad_regex(body: dict) -> Finding | None:
    for param, value in (("structured_outputs.regex", (_outputs(body) or {}).get("regex")),
                         ("guided_regex", body.get("guided_regex"))):
        if isinstance(value, str) and value:
            try:
                re.compile(value)
            except re.error as e:
                return Finding(f"{param} does not compile: {e}", param)
    return None


def _response_format_text(body: dict) -> Finding | None:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "text":
        return Finding('response_format {"type": "text"}', "response_format")
    return None


def _drop_response_format(body: dict) -> None:
    body.pop("response_format", None)  # text is what a response is without one


def _json_schema_without_schema(body: dict) -> Finding | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or spec.get("schema") is None:
        return Finding("response_format json_schema needs a schema",
                       "response_format.json_schema.schema")
    return None


RULES: tuple[Rule, ...] = (
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
)
