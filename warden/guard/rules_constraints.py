"""Structured-output constraints that crash or pin a grammar engine by what they hold (a NUL,
a huge counted repetition, too many choices, a huge grammar) or by what they are combined
with (`min_tokens`, and `n` on old engines).

The constraint strings are read where the engine reads them (`structured_outputs`, else the
guided_* fields before vLLM 0.12; a `structural_tag` response format), and a JSON schema's
patterns through schema_check.
"""

from __future__ import annotations

from warden.guard.lax import lax_int
from warden.guard.patterns import NUL, repetition
from warden.guard.rule import NORMALIZE, REJECT, ROUTE, Finding, Rule, RuleContext
from warden.guard.rules_structured import GUIDED_KEYS, param_name, structured_params
from warden.guard.schema_check import NUL_CHAR, REPEAT
from warden.guard.schema_slots import SCHEMA_KEYS, schema_finding, slots

_TEXTS = ("regex", "grammar", "structural_tag", "whitespace_pattern")
_REGEXES = ("regex", "whitespace_pattern")
CONSTRAINT_KEYS = frozenset({"structured_outputs", "structural_tag", *GUIDED_KEYS})
_ALL_KEYS = CONSTRAINT_KEYS | SCHEMA_KEYS
_PINS = "a grammar this large compiles in the engine with no time bound"


def _texts(body: dict) -> list[tuple[str, str, str]]:
    """(parameter, field, text) of each constraint string the engine reads: regex, grammar,
    structural tag (as JSON text), whitespace pattern, and each choice."""
    found: list[tuple[str, str, str]] = []
    params = structured_params(body)
    if params is not None:
        values, prefix = params
        for field in _TEXTS:
            value = values.get(field)
            if isinstance(value, str):
                found.append((param_name(prefix, field), field, value))
        choices = values.get("choice")
        if isinstance(choices, list):
            found.extend((param_name(prefix, "choice"), "choice", choice)
                         for choice in choices if isinstance(choice, str))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "structural_tag":
        found.extend(("response_format", "structural_tag", text)
                     for text in _strings(response_format, 100_000))
    return found


def _strings(value: object, limit: int) -> list[str]:
    """The strings in a JSON value (keys too), walked iteratively, at most `limit` nodes."""
    found: list[str] = []
    stack, seen = [value], 0
    while stack and seen < limit:
        node = stack.pop()
        seen += 1
        if isinstance(node, str):
            found.append(node)
        elif isinstance(node, dict):
            found.extend(key for key in node if isinstance(key, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _nul(body: dict, ctx: RuleContext) -> Finding | None:
    for param, _, text in _texts(body):
        if NUL in text:
            return Finding(f"{param} holds a NUL character", param)
    return schema_finding(body, ctx, NUL_CHAR)


def _huge_repeat(body: dict, ctx: RuleContext) -> Finding | None:
    limit = ctx.limits.max_repetition
    for param, field, text in _texts(body):
        if field in _REGEXES or field == "grammar":
            copies = repetition(text, limit, grammar=field == "grammar")
            if copies > limit:
                return Finding(f"{param} repeats {copies} times (more than {limit})", param)
    return schema_finding(body, ctx, REPEAT)


def _many_choices(body: dict, ctx: RuleContext) -> Finding | None:
    params = structured_params(body)
    choices = params[0].get("choice") if params is not None else None
    if not isinstance(choices, list) or params is None:
        return None
    param, limits = param_name(params[1], "choice"), ctx.limits
    if len(choices) > limits.max_choices:
        return Finding(f"{param} has {len(choices)} choices (more than {limits.max_choices})",
                       param)
    size = sum(len(choice) for choice in choices if isinstance(choice, str))
    if size > limits.max_choice_bytes:
        return Finding(f"{param} holds {size} characters (more than "
                       f"{limits.max_choice_bytes})", param)
    return None


def _huge_grammar(body: dict, ctx: RuleContext) -> Finding | None:
    limit = ctx.limits.max_grammar_bytes
    for param, field, text in _texts(body):
        if field in ("grammar", "structural_tag", "regex") and len(text) > limit:
            return Finding(f"{param} is {len(text)} characters long (more than {limit})",
                           param)
    return None


def constrained(body: dict) -> bool:
    """Whether the engine decodes this request under a grammar: a structured-output
    constraint, a json_schema/json_object/structural_tag response format, or forced tools."""
    params = structured_params(body)
    if params is not None and any(params[0].get(field) not in (None, "", [], {}, False)
                                  for field in ("json", "regex", "choice", "grammar",
                                                "json_object", "structural_tag")):
        return True
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
            "json_schema", "json_object", "structural_tag"):
        return True
    return any(slot.param.startswith("tools") for slot in slots(body))


def _min_tokens(body: dict, ctx: RuleContext) -> Finding | None:
    value = lax_int(body.get("min_tokens"))
    if value is None or value <= 0 or not constrained(body):
        return None
    return Finding(f"min_tokens={value} with a structured-output constraint", "min_tokens")


def _drop_min_tokens(body: dict) -> None:
    body.pop("min_tokens", None)  # the grammar decides where the output ends


def _n_guided(body: dict, ctx: RuleContext) -> Finding | None:
    for field in ("n", "best_of"):
        value = lax_int(body.get(field))
        if value is not None and value > 1 and constrained(body):
            return Finding(f"{field}={value} with a structured-output constraint", field)
    return None


CONSTRAINT_RULES: tuple[Rule, ...] = (
    Rule("so-nul", "a NUL character in a structured-output regex, grammar, choice, "
         "structural tag, whitespace pattern or JSON schema pattern",
         "mlc-ai/xgrammar#850 (a NUL in a regex: SIGSEGV in xgrammar's regex converter, "
         "the process dies), vllm-project/vllm#51796 (vLLM refuses it in regex only; a "
         "schema's pattern reaches the same converter)", None, REJECT, _ALL_KEYS, _nul),
    Rule("so-huge-repeat", "a structured-output regex, grammar or JSON schema pattern whose "
         "counted repetitions ({m,n}, nested ones multiplied; Lark's ~ m..n) ask for more "
         "than guard.limits.max_repetition copies",
         "GHSA-rwxx-mrjm-wc2m, vllm-project/vllm#45118 (a regex's automaton explodes; "
         "compiled with no time bound before it), mlc-ai/xgrammar#368 ([a-z]{2,20000} slow "
         "to compile)", None, REJECT, _ALL_KEYS, _huge_repeat),
    Rule("so-many-choices", "a structured-output choice list longer than "
         "guard.limits.max_choices, or with more than max_choice_bytes characters",
         "defensive: every choice is one alternative of a grammar compiled with no timeout "
         "(vllm-project/vllm#54003); compile time grows faster than the count (measured)",
         None, REJECT, CONSTRAINT_KEYS, _many_choices, harm=_PINS),
    Rule("so-huge-grammar", "a structured-output grammar, regex or structural tag longer than "
         "guard.limits.max_grammar_bytes",
         "defensive: grammars and structural tags compile with no timeout "
         "(vllm-project/vllm#54003)", None, REJECT, CONSTRAINT_KEYS | {"response_format"},
         _huge_grammar, harm=_PINS),
    Rule("so-min-tokens", "min_tokens above 0 on a request decoded under a grammar: once "
         "the grammar ends, only the stop token is allowed and min_tokens forbids it",
         "vllm-project/vllm#53665 (the token mask empties, HTTP 500), fixed by #54218 "
         "(merged after 0.28.0)", (0, 29, 0), NORMALIZE, frozenset({"min_tokens"}),
         _min_tokens, _drop_min_tokens, remedy="drop min_tokens"),
    Rule("so-n-guided", "n or best_of above 1 on a request decoded under a grammar",
         "vllm-project/vllm#11312 (V0 engine IndexError with n>1 and xgrammar), fixed by "
         "#11637 (0.7.0)", (0, 7, 0), ROUTE, frozenset({"n", "best_of"}), _n_guided),
)
