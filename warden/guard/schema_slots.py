"""Where a request carries JSON schemas the engine compiles into grammars, and each one read
and checked once per request (shared by the rules that judge it through `RuleContext.memo`).

The engine compiles: `structured_outputs.json` and (before vLLM 0.12) `guided_json`, each an
object or JSON text; `response_format.json_schema.schema`; the Responses API's
`text.format.schema` (type json_schema); and the parameters of the tools when `tool_choice`
forces a call: every tool's for "required" (vLLM joins them under one anyOf), the named
tool's for a named function. With `tool_choice` "auto" or "none" the tools are only shown to
the model in its prompt, never compiled, and are not judged here.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from warden.guard.rule import Finding, RuleContext
from warden.guard.schema_check import Bounds, Problem, check

SCHEMA_KEYS = frozenset({"structured_outputs", "guided_json", "response_format", "tools",
                         "text"})


@dataclass(frozen=True)
class Slot:
    param: str    # the parameter's name, as told to the client
    holder: dict  # the object that holds the schema
    key: str      # its key there

    @property
    def raw(self) -> object:
        return self.holder.get(self.key)


def parsed(value: object) -> object:
    """A schema given as JSON text, parsed as the engine parses it (None if it is not JSON:
    the engine refuses it itself)."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _forced_tools(body: dict) -> list[Slot]:
    choice, tools = body.get("tool_choice"), body.get("tools")
    if not isinstance(tools, list) or not (choice == "required" or isinstance(choice, dict)):
        return []
    named = None
    if isinstance(choice, dict):  # {"type": "function", "function": {"name": ...}} or flat
        function = choice.get("function")
        named = (function if isinstance(function, dict) else choice).get("name")
    found = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")  # chat; the Responses API has them on the tool
        holder = function if isinstance(function, dict) else tool
        if named is not None and holder.get("name") != named:
            continue
        where = f"tools[{i}].function" if holder is function else f"tools[{i}]"
        found.append(Slot(f"{where}.parameters", holder, "parameters"))
    return found


def slots(body: dict) -> list[Slot]:
    """The JSON schemas `body` asks the engine to compile (present and not null)."""
    found: list[Slot] = []
    outputs = body.get("structured_outputs")
    if isinstance(outputs, dict):
        found.append(Slot("structured_outputs.json", outputs, "json"))
    found.append(Slot("guided_json", body, "guided_json"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and isinstance(response_format.get("json_schema"),
                                                        dict):
        found.append(Slot("response_format.json_schema.schema",
                          response_format["json_schema"], "schema"))
    text = body.get("text")
    form = text.get("format") if isinstance(text, dict) else None
    if isinstance(form, dict) and form.get("type") == "json_schema":
        found.append(Slot("text.format.schema", form, "schema"))
    found.extend(_forced_tools(body))
    return [slot for slot in found if slot.raw is not None]


def checked(body: dict, ctx: RuleContext) -> list[tuple[str, dict[str, Problem]]]:
    """Each schema's problems by kind (schema_check), computed once per request."""
    memo = ctx.memo.get("schemas")
    if isinstance(memo, list):
        return memo
    limits = ctx.limits
    bounds = Bounds(limits.max_repetition, limits.max_schema_nodes)
    found = []
    for slot in slots(body):
        schema = parsed(slot.raw)
        if schema is not None:  # (JSON text that is not JSON: the engine refuses it)
            found.append((slot.param, check(schema, bounds)))
    ctx.memo["schemas"] = found
    return found


def first(body: dict, ctx: RuleContext, kind: str) -> tuple[str, Problem] | None:
    """The first schema with a problem of `kind`, and that problem."""
    for param, problems in checked(body, ctx):
        if kind in problems:
            return param, problems[kind]
    return None


def schema_finding(body: dict, ctx: RuleContext, kind: str) -> Finding | None:
    """The finding of the first schema with a problem of `kind` (None: no such problem)."""
    found = first(body, ctx, kind)
    if found is None:
        return None
    param, problem = found
    where = f" at {problem.where}" if problem.where else ""
    return Finding(f"{param}{where}: {problem.message}", param)
