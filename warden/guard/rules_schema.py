"""Structured-output JSON schemas too complex to compile in bounded time.

xgrammar compiles a schema into a grammar with no timeout, in time super-exponential in the
nesting of anyOf/oneOf/allOf (vllm-project/vllm#54003): one request pins the engine. The
engine compiles every schema a request carries, however it is spelled: `structured_outputs.json`
and `guided_json` as an object or as a JSON string, `response_format.json_schema.schema`, and
the parameters of the tools when `tool_choice` forces a call ("required", or a named
function: vLLM turns them into a schema, the tools under one anyOf).
"""

from __future__ import annotations

from warden.guard.rule import REJECT, Finding, Rule, RuleContext
from warden.guard.schema_slots import parsed, slots

_COMBINATORS = frozenset({"anyOf", "oneOf", "allOf"})


def _schemas(body: dict) -> list[tuple[str, object]]:
    """The JSON schemas a request asks the engine to compile, with their parameter names
    (schema_slots finds them). Tools forced by `tool_choice: "required"` are measured as the
    one schema the engine builds of them: an array of anyOf the tools' calls."""
    found: list[tuple[str, object]] = []
    tools: list[tuple[str, object]] = []
    for slot in slots(body):
        (tools if slot.param.startswith("tools[") else found).append(
            (slot.param, parsed(slot.raw)))
    if body.get("tool_choice") == "required" and tools:
        tools = [("tools", {"type": "array", "items": {"type": "object", "anyOf": [
            {"properties": {"parameters": schema}} for _, schema in tools]}})]
    return found + tools


def complexity(schema: object) -> tuple[int, int]:
    """(deepest nesting, most combinators nested on one path) of a schema. Iterative: a
    schema from a JSON string may nest deeper than Python's recursion limit."""
    deepest = most = 0
    stack: list[tuple[object, int, int]] = [(schema, 0, 0)]
    while stack:
        node, depth, combinators = stack.pop()
        deepest, most = max(deepest, depth), max(most, combinators)
        if isinstance(node, dict):
            for key, value in node.items():
                stack.append((value, depth + 1, combinators + (key in _COMBINATORS)))
        elif isinstance(node, list):
            stack.extend((value, depth + 1, combinators) for value in node)
    return deepest, most


def _schema_too_complex(body: dict, ctx: RuleContext) -> Finding | None:
    limits = ctx.limits
    for param, schema in _schemas(body):
        depth, combinators = complexity(schema)
        if depth > limits.max_schema_depth:
            return Finding(f"{param} nests {depth} levels deep (limit "
                           f"{limits.max_schema_depth})", param)
        if combinators > limits.max_schema_combinators:
            return Finding(f"{param} nests anyOf/oneOf/allOf {combinators} deep (limit "
                           f"{limits.max_schema_combinators})", param)
    return None


SCHEMA_RULES: tuple[Rule, ...] = (
    Rule("so-schema-too-complex",
         "a structured-output JSON schema (an object or JSON text, or forced tools' "
         "parameters) nested too deep, or with anyOf/oneOf/allOf nested too deep: its "
         "grammar compiles in unbounded time, with no timeout",
         "vllm-project/vllm#54003 (xgrammar JSON compile has no timeout; super-exponential "
         "in oneOf depth)", None, REJECT,
         frozenset({"structured_outputs", "guided_json", "response_format", "tools"}),
         _schema_too_complex),
)
