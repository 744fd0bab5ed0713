"""Structured-output regexes by their shape (regex_scan): repetitions that blow up the
engine's compilation, and empty alternatives that xgrammar's regex converter mishandles.

The regexes are read where the engine reads them: `structured_outputs.regex` (else
`guided_regex` before vLLM 0.12), the whitespace pattern beside them, and the `pattern`s of
the JSON schemas a request carries (schema_check's NESTED problems).

Nested unbounded repetitions (`(a+)+b`) made the automaton built from a regex explode with no
time bound in the xgrammar and outlines backends until vLLM 0.24 compiled regexes under a
timeout (GHSA-rwxx-mrjm-wc2m); the lm-format-enforcer backend compiles them with none on every
version (PYSEC-2026-3933). An empty alternative (`^(|.*)$`) is refused by xgrammar's
converter: with the default `auto` backend the request is passed on to another backend while
an engine already holding xgrammar compiles it, and EngineCore died of it before 0.26
(vllm-project/vllm#37642). It is rewritten into the optional group it means (`^(.*)?$`),
which matches the same strings, or refused where no rewrite is exact.
"""

from __future__ import annotations

from warden.config.schema import ModelFacts
from warden.guard.regex_scan import Shape, scan
from warden.guard.rule import NORMALIZE, REJECT, Finding, Rule, RuleContext
from warden.guard.rules_structured import param_name, structured_params
from warden.guard.schema_check import NESTED
from warden.guard.schema_slots import SCHEMA_KEYS, schema_finding

REGEX_KEYS = frozenset({"structured_outputs", "guided_regex", "guided_whitespace_pattern"})
_FIELDS = ("regex", "whitespace_pattern")
_XGRAMMAR = frozenset({"", "auto", "xgrammar"})
_BLOWS_UP = "the engine compiles this regex with no time bound, and it blows up"


def backend(facts: ModelFacts) -> str:
    """The model's structured-output backend as vLLM names it ("" when unknown)."""
    return (facts.structured_output_backend or "").strip().lower().replace("_", "-")


def may_use_xgrammar(facts: ModelFacts) -> bool:
    """Whether the engine may compile with xgrammar: its backend is xgrammar, auto (xgrammar
    first) or unknown."""
    return backend(facts) in _XGRAMMAR


def shapes(body: dict, ctx: RuleContext) -> list[tuple[str, str, Shape]]:
    """(parameter, field, shape) of each structured-output regex, scanned once per request."""
    memo = ctx.memo.get("regex_shapes")
    if isinstance(memo, list):
        return memo
    found: list[tuple[str, str, Shape]] = []
    params = structured_params(body)
    if params is not None:
        values, prefix = params
        for field in _FIELDS:
            value = values.get(field)
            if isinstance(value, str) and value:
                found.append((param_name(prefix, field), field, scan(value)))
    ctx.memo["regex_shapes"] = found
    return found


def _nested(body: dict, ctx: RuleContext) -> Finding | None:
    for param, _, shape in shapes(body, ctx):
        if shape.nested is not None:
            return Finding(f"{param} {shape.nested}", param)
    if SCHEMA_KEYS.isdisjoint(body):
        return None
    return schema_finding(body, ctx, NESTED)


def _nested_lmfe(body: dict, ctx: RuleContext) -> Finding | None:
    return _nested(body, ctx) if backend(ctx.facts) == "lm-format-enforcer" else None


def _empty_alternative(rewritable: bool):
    def find(body: dict, ctx: RuleContext) -> Finding | None:
        if not may_use_xgrammar(ctx.facts):
            return None
        for param, field, shape in shapes(body, ctx):
            if field == "regex" and shape.empty_alternative \
                    and (shape.rewritten is not None) == rewritable:
                return Finding(f"{param} has an empty alternative", param)
        return None
    return find


def _rewrite_empty_alternatives(body: dict) -> None:
    """`(|X)` becomes `(X)?` (and `|X` at the top `(?:X)?`): the same strings."""
    params = structured_params(body)
    if params is None:
        return
    values, prefix = params
    regex = values.get("regex")
    if isinstance(regex, str):
        rewritten = scan(regex).rewritten
        if rewritten is not None:
            values["regex"] = rewritten
            if not prefix:  # (the deprecated field: structured_params read it from the body)
                body["guided_regex"] = rewritten


REGEX_RULES: tuple[Rule, ...] = (
    Rule("so-regex-redos",
         "a structured-output regex or JSON schema `pattern` that repeats without bound "
         "something that itself repeats without bound (`(a+)+`, `(a*)*`, `(\\w+\\s?)+`) or "
         "alternatives that match the same text (`(a|a)*`)",
         "CVE-2026-55574 / GHSA-rwxx-mrjm-wc2m (`(a+)+b` hung the inference worker: regexes "
         "compiled with no timeout in the xgrammar and outlines backends; fixed in 0.24.0)",
         (0, 24, 0), REJECT, REGEX_KEYS | SCHEMA_KEYS, _nested, harm=_BLOWS_UP),
    Rule("so-regex-redos-lmfe",
         "the same regexes as so-regex-redos, for a model whose structured-output backend is "
         "lm-format-enforcer (`guard.models.*.structured_output_backend`)",
         "PYSEC-2026-3933 (lm-format-enforcer compiles the regex into an automaton with no "
         "timeout; no fixed version known)", None, REJECT, REGEX_KEYS | SCHEMA_KEYS,
         _nested_lmfe, harm=_BLOWS_UP),
    Rule("so-regex-empty-alt",
         "a structured-output regex with an empty alternative (`^(|.*)$`), where the engine "
         "may compile it with xgrammar (its backend is xgrammar, auto or unknown)",
         "vllm-project/vllm#37642 (xgrammar refuses it; with the auto backend another "
         "backend is chosen while the engine compiles it with xgrammar, and EngineCore "
         "died; fixed in 0.26.0)", (0, 26, 0), NORMALIZE,
         frozenset({"structured_outputs", "guided_regex"}), _empty_alternative(True),
         _rewrite_empty_alternatives,
         remedy="rewrite it as the optional group it means (`^(.*)?$`)"),
    Rule("so-regex-empty-alt-backref",
         "a structured-output regex with an empty alternative that cannot be rewritten "
         "exactly: beside a backreference, a conditional, a possessive or atomic repetition "
         "or inline flags, or inside a lookaround (xgrammar backend, auto or unknown)",
         "vllm-project/vllm#37642 (an empty alternative killed EngineCore with the auto "
         "backend; fixed in 0.26.0)", (0, 26, 0), REJECT,
         frozenset({"structured_outputs", "guided_regex"}), _empty_alternative(False)),
)
