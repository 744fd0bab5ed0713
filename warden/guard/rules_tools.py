"""Tool definitions that make a tool-call parser run the model's text as code.

vLLM 0.10.0 to 0.10.1 shipped a qwen3_coder tool-call parser that converts each argument the
model writes by its parameter's `type` in the request's tool definition: strings, integers,
numbers and booleans by hand, and anything else (`array`, `object` when the text is not JSON,
`null`, a list of types, an unknown name) with Python's `eval()` (CVE-2025-9141, fixed in
0.10.1.1; versions compare on three parts, so 0.10.1.1 itself is routed around too). A client
that steers the model into writing code as such an argument runs it in the API server. The
advisory names untyped parameters too. The parser reads the top-level `properties` of the
called function's parameters, and runs when tool calls are parsed from free text:
`tool_choice` absent or "auto" (with "required" or a named function the output is JSON that
vLLM reads itself).

The guard cannot tell which parser a server runs, so such requests are routed to backends of
other versions; the definitions themselves are legitimate JSON Schema.
"""

from __future__ import annotations

from warden.fleet.deployment import Deployment
from warden.guard.rule import ROUTE, Finding, Rule, RuleContext

# The types the parser converts without eval() (it lowercases str(type) first).
_TEXT_TYPES = frozenset({"string", "str", "text", "varchar", "char", "enum", "boolean", "bool",
                         "binary"})
_NUMBER_PREFIXES = ("int", "uint", "long", "short", "unsigned", "num", "float")


def _converted_by_hand(spec: object) -> bool:
    if not isinstance(spec, dict) or "type" not in spec:
        return False  # untyped: named by the advisory
    kind = str(spec["type"]).strip().lower()
    return kind in _TEXT_TYPES or kind.startswith(_NUMBER_PREFIXES)


def _evaluated_parameter(body: dict, ctx: RuleContext) -> Finding | None:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if not isinstance(tools, list) or choice not in (None, "auto"):
        return None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        holder = function if isinstance(function, dict) else tool
        parameters = holder.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, dict) else None
        if not isinstance(properties, dict):
            continue
        for name, spec in properties.items():
            if not _converted_by_hand(spec):
                where = f"tools[{i}].function" if holder is function else f"tools[{i}]"
                param = f"{where}.parameters"
                kind = spec.get("type") if isinstance(spec, dict) else None
                told = "has no type" if kind is None else f"has type {str(kind)[:40]!r}"
                return Finding(f"{param} property {str(name)[:60]!r} {told}", param)
    return None


def _qwen3_coder_parser(deployment: Deployment) -> bool:
    """Only the qwen3_coder parser eval()ed arguments; a backend's parser is never published,
    so the rule acts only where it is declared (an unknown parser is not affected: otherwise
    every agent request with an array parameter would be refused on a fleet whose versions
    are unknown)."""
    return deployment.tool_call_parser == "qwen3_coder"


TOOL_RULES: tuple[Rule, ...] = (
    Rule("tool-param-eval",
         "a tool parameter without a type, or with one the qwen3_coder tool-call parser "
         "does not convert itself (`array`, `object`, `null`, a list of types, an unknown "
         "name), with `tool_choice` absent or auto, on a backend declared to parse tool calls "
         "with qwen3_coder (`deployment.tool_call_parser`)",
         "CVE-2025-9141 (the qwen3_coder parser eval()s such arguments: code execution in "
         "the API server; 0.10.0 to before 0.10.1.1)", (0, 10, 2), ROUTE,
         frozenset({"tools"}), _evaluated_parameter, since=(0, 10, 0),
         affects=_qwen3_coder_parser,
         harm="a tool-call parser on this server runs such arguments as code"),
)
