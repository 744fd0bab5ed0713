"""Structured outputs and guided decoding: empty, contradictory or uncompilable constraints
(schemas too complex to compile are rules_schema's).

vLLM 0.11 killed EngineCore on a constraint that was present but meant nothing; 0.24 still
did on two of them; 0.26+ is fixed (measured on real engines: docs/real-vllm.md). Where the
request is valid OpenAI the rule normalizes (an empty constraint is no constraint); where it
cannot mean anything, it rejects. Values are judged as vLLM reads them (warden.guard.lax):
`{"json_object": 0}` is false there, so it is false here.
"""

from __future__ import annotations

import functools
import re
import re._constants as re_constants  # (the parser `re.compile` runs first: a pattern
import re._parser as re_parser  # is checked without being compiled: _bad_regex)

from warden.guard.lax import lax_bool
from warden.guard.rule import NORMALIZE, REJECT, Finding, Rule, RuleContext

_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
# vLLM < 0.12 builds structured_outputs from these deprecated top-level fields when it is
# absent or null (whitespace_pattern alone: no constraint, and the engine dies of it).
_GUIDED = {"json": "guided_json", "regex": "guided_regex", "choice": "guided_choice",
           "grammar": "guided_grammar", "structural_tag": "structural_tag",
           "whitespace_pattern": "guided_whitespace_pattern"}
GUIDED_KEYS = frozenset(_GUIDED.values())


def _outputs(body: dict) -> dict | None:
    value = body.get("structured_outputs")
    return value if isinstance(value, dict) else None


def structured_params(body: dict) -> tuple[dict, str] | None:
    """The structured-output parameters the engine builds from `body`, and the prefix of
    their names in it ("structured_outputs." or "" for the deprecated top-level fields)."""
    outputs = body.get("structured_outputs")
    if isinstance(outputs, dict):
        return outputs, "structured_outputs."
    if outputs is not None:
        return None  # not an object: vLLM refuses the request itself
    guided = {field: body[key] for field, key in _GUIDED.items() if body.get(key) is not None}
    return (guided, "") if guided else None


def param_name(prefix: str, field: str) -> str:
    return f"{prefix}{field}" if prefix else _GUIDED[field]


def _no_constraint(body: dict, ctx: RuleContext) -> Finding | None:
    if "structured_outputs" in body and body["structured_outputs"] is None \
            and not GUIDED_KEYS.intersection(body):
        return Finding("structured_outputs carries no constraint", "structured_outputs")
    found = structured_params(body)
    if found is None or any(found[0].get(f) is not None for f in _CONSTRAINTS):
        return None
    param = "structured_outputs" if found[1] else _GUIDED["whitespace_pattern"]
    return Finding(f"{param} carries no structured-output constraint", param)


def _drop_no_constraint(body: dict) -> None:
    body.pop("structured_outputs", None)
    if not any(body.get(_GUIDED[f]) is not None for f in _CONSTRAINTS if f in _GUIDED):
        body.pop(_GUIDED["whitespace_pattern"], None)


def _empty(field: str, value: object) -> bool:
    """A constraint present but meaning nothing, as the engine reads it: json_object false
    (or 0, "false", "no", ...), an empty json, regex or structural_tag, a grammar of only
    whitespace, no choices.
    A value of the wrong type is not judged: vLLM refuses the request itself."""
    if value is None:
        return False
    if field == "json_object":
        return lax_bool(value) is False
    if field == "choice":
        return value == []
    if field == "grammar" and isinstance(value, str):
        return not value.strip()  # whitespace is no grammar either (vllm-project/vllm#23215)
    return value == "" or (field == "json" and value == {})


def _falsy(params: dict) -> list[str]:
    return [f for f in _CONSTRAINTS if _empty(f, params.get(f))]


def _falsy_constraint(body: dict, ctx: RuleContext) -> Finding | None:
    found = structured_params(body)
    fields = _falsy(found[0]) if found is not None else []
    if not fields:
        return None
    param = param_name(found[1], fields[0]) if found is not None else ""
    return Finding(f"{param} is present but empty or false", param)


def _drop_falsy(body: dict) -> None:
    """Drop the empty constraints. A structured_outputs left with none goes, and the guided_*
    fields it hid (0.11 reads them then) are judged next; guided options left with no
    constraint go too."""
    while (found := structured_params(body)) is not None:
        params, prefix = found
        if not prefix:
            for field in _falsy(params):
                del body[_GUIDED[field]]
            if not any(body.get(_GUIDED[f]) is not None for f in _CONSTRAINTS if f in _GUIDED):
                body.pop(_GUIDED["whitespace_pattern"], None)
            return
        for field in _falsy(params):
            del params[field]
        if any(params.get(f) is not None for f in _CONSTRAINTS):
            return
        del body["structured_outputs"]


def _bad_regex(body: dict, ctx: RuleContext) -> Finding | None:
    for param, value in (("structured_outputs.regex", (_outputs(body) or {}).get("regex")),
                         ("guided_regex", body.get("guided_regex"))):
        if isinstance(value, str) and value:
            problem = _regex_problem(value)
            if problem is not None:
                return Finding(f"{param} {problem}", param)
    return None


@functools.lru_cache(maxsize=256)  # (a client sends the same regex again and again)
def _regex_problem(value: str) -> str | None:
    """What Python's `re` says is wrong with `value`: a regex it refuses, vLLM's compilers
    refuse too (`a{4294967296}`: an OverflowError). On the event loop, so bounded in time:
    parsing is ~0.6 µs a byte (the 1 MiB that so-huge-grammar allows took 0.65 s), so one
    longer than REGEX_CHECKED is only searched for repeat counts past `re`'s bound (the
    known killer); compiling works through each character of a class's ranges (case-folding
    each under (?i): 200 classes of `[\x00-\U0010ffff]` took 1.8 s), so one whose classes
    span more than CLASS_WIDTH_COMPILED characters is parsed, and its look-behinds checked
    as the compiler would (they must have one width), but not compiled."""
    if len(value) > REGEX_CHECKED:
        for count in _REPEAT_COUNT.findall(value):
            if int(count) >= re_constants.MAXREPEAT:
                return f"does not compile: the repetition number {count} is too large"
        return None
    try:
        parsed = re_parser.parse(value)
        width, uneven = _scan(parsed)
        if uneven:
            return "does not compile: look-behind requires fixed-width pattern"
        if width <= CLASS_WIDTH_COMPILED:
            re.compile(value)
    except re.error as e:
        return f"does not compile: {e}"
    except RecursionError:  # (Python's regex parser recurses once per group)
        return "nests groups too deep to compile"
    except (OverflowError, ValueError, MemoryError) as e:
        return f"does not compile: {e}"
    return None


# The longest regex parsed (~10 ms), and the most characters its classes' ranges may span
# for it to be compiled too (~0.5 ms, 2 with (?i); all of Unicode is 1.1 million).
REGEX_CHECKED = 16 * 1024
CLASS_WIDTH_COMPILED = 1 << 18
_REPEAT_COUNT = re.compile(r"\{\s*(\d{10,})")


def _scan(parsed: re_parser.SubPattern) -> tuple[int, bool]:
    """How many characters the ranges of `parsed`'s classes span together, and whether a
    look-behind in it has more than one width."""
    width, uneven = 0, False
    pending: list = [parsed]
    while pending:
        for op, av in pending.pop():
            if op is re_constants.IN:
                width += sum(bound[1] - bound[0] for kind, bound in av
                             if kind is re_constants.RANGE)
            elif op is re_constants.SUBPATTERN:
                pending.append(av[3])
            elif op is re_constants.BRANCH:
                pending.extend(av[1])
            elif op in _NESTING:  # (av: a pattern, or a tuple that holds some)
                if (op is re_constants.ASSERT or op is re_constants.ASSERT_NOT) and av[0] < 0:
                    low, high = av[1].getwidth()
                    uneven = uneven or low != high
                pending.extend([av] if isinstance(av, re_parser.SubPattern) else
                               (p for p in av if isinstance(p, re_parser.SubPattern)))
    return width, uneven


# The parsed pattern's other operators that hold patterns (repeats, look-arounds, ...).
_NESTING = frozenset((re_constants.MAX_REPEAT, re_constants.MIN_REPEAT, re_constants.ASSERT,
                      re_constants.ASSERT_NOT, re_constants.GROUPREF_EXISTS,
                      re_constants.ATOMIC_GROUP, re_constants.POSSESSIVE_REPEAT))


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


STRUCTURED_OUTPUT_RULES: tuple[Rule, ...] = (
    Rule("so-no-constraint", "structured_outputs (or the guided_* fields) present but "
         "carrying no constraint: empty or all null",
         "measured on vLLM 0.11 (EngineCore dies: 'No valid structured output parameter "
         "found')", (0, 12, 0), NORMALIZE,
         frozenset({"structured_outputs", *GUIDED_KEYS}), _no_constraint, _drop_no_constraint,
         remedy="drop it (no constraint)"),
    Rule("so-falsy-constraint",
         "a structured-output constraint present but meaning nothing as vLLM reads it: "
         'json_object false (or 0, "false", "no", ...), an empty json, regex or '
         "structural_tag, a grammar of only whitespace, no choices",
         "vllm-project/vllm#45346, #47450, #23215 (an empty grammar); measured on 0.11 and "
         "0.24",
         (0, 26, 0), NORMALIZE, frozenset({"structured_outputs", *GUIDED_KEYS}),
         _falsy_constraint, _drop_falsy, remedy="drop the empty constraints"),
    Rule("so-bad-regex", "a structured-output regex that does not compile (on the event "
         "loop, so bounded: up to 16 KiB parsed, and compiled unless its classes span over "
         "2^18 characters; past 16 KiB, only a repeat count too large)",
         "vllm-project/vllm#17313, #17623; measured on 0.11 (dies) and 0.32 (400)", None,
         REJECT, frozenset({"structured_outputs", "guided_regex"}), _bad_regex),
    Rule("rf-text", 'response_format {"type": "text"}',
         "vllm-project/vllm-ascend#5148; measured on 0.11", (0, 12, 0), NORMALIZE,
         frozenset({"response_format"}), _response_format_text, _drop_response_format,
         remedy="drop it (text is the default)"),
    Rule("rf-json-schema-without-schema", "response_format json_schema without a schema",
         "measured on 0.11 (dies); invalid OpenAI on every version", None, REJECT,
         frozenset({"response_format"}), _json_schema_without_schema),
)
