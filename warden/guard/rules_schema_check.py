"""Structured-output JSON schemas the grammar engine refuses, cannot resolve or blows up on
(the checks are schema_check's; which schemas a request carries, schema_slots').

A schema the engine fails to compile killed EngineCore until vLLM 0.26 caught compilation
failures (vllm-project/vllm#47312; measured on 0.25): the API server's own check of a schema
is not the engine's compilation, and with the default `auto` backend a schema xgrammar
refuses is sent on to another backend while the engine may already hold xgrammar
(vllm-project/vllm#43920). From 0.26 such a request fails alone, with a 400 or a 500. These
rules answer 400 at the door on every version: what they refuse is not a valid JSON schema,
or asks for more than the engine can build.

One draft-07 form is rewritten rather than refused: `items` as a list (a tuple) is
draft 2020-12's `prefixItems`, which is what xgrammar reads (it refuses the list,
mlc-ai/xgrammar#840), and `additionalItems` beside it is 2020-12's `items`.
"""

from __future__ import annotations

import orjson

from warden.guard.rule import NORMALIZE, REJECT, Finding, Rule, RuleContext
from warden.guard.schema_check import BOUND, INVALID, REF, children
from warden.guard.schema_slots import SCHEMA_KEYS, parsed, schema_finding, slots


def _finding(kind: str):
    def find(body: dict, ctx: RuleContext) -> Finding | None:
        return schema_finding(body, ctx, kind)
    return find


def _tuples(schema: object, limit: int) -> list[dict]:
    """The subschemas of `schema` whose `items` is a list, without `prefixItems` (walked
    iteratively through schema positions only, at most `limit` of them)."""
    found: list[dict] = []
    stack, seen = [schema], 0
    while stack and seen < limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, dict):
            if isinstance(node.get("items"), list) and "prefixItems" not in node:
                found.append(node)
            stack.extend(children(node))
    return found


def _tuple_items(body: dict, ctx: RuleContext) -> Finding | None:
    for slot in slots(body):
        if _tuples(parsed(slot.raw), ctx.limits.max_schema_nodes):
            return Finding(f"{slot.param} uses draft-07 tuple items", slot.param)
    return None


def _to_prefix_items(body: dict) -> None:
    """`items: [a, b]` becomes `prefixItems: [a, b]`, and `additionalItems: x` beside it
    becomes `items: x`: the same arrays, in draft 2020-12's words. A schema given as JSON
    text stays JSON text."""
    for slot in slots(body):
        raw = slot.raw
        schema = parsed(raw)
        nodes = _tuples(schema, 2 ** 31)  # (the finding walked it within the limit)
        for node in nodes:
            node["prefixItems"] = node.pop("items")
            if "additionalItems" in node:
                node["items"] = node.pop("additionalItems")
        if nodes and isinstance(raw, str):
            slot.holder[slot.key] = orjson.dumps(schema).decode()


SCHEMA_CHECK_RULES: tuple[Rule, ...] = (
    Rule("so-schema-tuple-items",
         "a structured-output JSON schema with draft-07 tuple items (`items` as a list), "
         "which xgrammar refuses",
         "vllm-project/vllm#30346 (a draft-07 array crashed the server), mlc-ai/xgrammar#840",
         None, NORMALIZE, SCHEMA_KEYS, _tuple_items, _to_prefix_items,
         remedy="`items: [...]` becomes `prefixItems` (the same meaning in 2020-12)"),
    Rule("so-schema-invalid",
         "a structured-output JSON schema with a keyword of the wrong type or an "
         "impossible value (type not a type name, properties not an object of schemas, "
         "required not a list of strings, an empty enum or anyOf, a negative or fractional "
         "length, multipleOf 0, a minimum above its maximum, a subschema that is not an "
         "object or a boolean, a `pattern` that is not a regular expression)",
         "vllm-project/vllm#11119 ({\"type\": \"str\"} killed the engine), #17623 (an "
         "invalid schema crashed the API server), #43920, #47312 (compile failures killed "
         "EngineCore before 0.26), CVE-2025-48944 / GHSA-vrq3-r879-7m65 (a malformed "
         "pattern or type in a forced tool's parameters killed 0.8's worker)", None, REJECT,
         SCHEMA_KEYS, _finding(INVALID)),
    Rule("so-schema-bad-ref",
         "a structured-output JSON schema with a local $ref that points at nothing (or not "
         "at a schema), or a chain of $refs that comes back to itself with no schema in "
         "between; recursion through properties or items passes",
         "vllm-project/vllm#45172 (recursive $ref among the adversarial schemas that hang "
         "compilation), #47312 (a schema that fails to compile killed EngineCore before "
         "0.26)", None, REJECT, SCHEMA_KEYS, _finding(REF)),
    Rule("so-schema-huge-bound",
         "a structured-output JSON schema whose length, item or property counts ask for "
         "more than guard.limits.max_repetition copies, whose integer bounds pass 64 bits, "
         "or with more than max_schema_nodes subschemas",
         "vllm-project/vllm#17894 (an integer bound xgrammar could not read killed 0.8.5's "
         "engine; xgrammar refuses those past 64 bits, measured), "
         "mlc-ai/xgrammar#852 (a large maxLength makes every token's mask ~300x slower), "
         "#368 (counted repetitions expanded into copies)", None, REJECT, SCHEMA_KEYS,
         _finding(BOUND)),
)
