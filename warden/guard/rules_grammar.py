"""Structured-output grammars that xgrammar refuses (grammar_lint), for engines that may
compile them with xgrammar.

With the default `auto` backend, vLLM's API server checks a grammar with xgrammar and, when
xgrammar refuses it, hands the request to another backend; an engine that already compiled
a grammar with xgrammar compiles this one with xgrammar too, fails in its scheduling loop, and
EngineCore died of it until vLLM 0.26 made such failures the request's own
(vllm-project/vllm#43920: a grammar defining `root` twice, sent after a valid one). A Lark
grammar with `%import common.NUMBER`, which vLLM's conversion for xgrammar has no reading
for, killed 0.8.4's engine too (vllm-project/vllm#16911).

A model whose backend is known (`guard.models.*.structured_output_backend`) and is neither
xgrammar nor auto is not judged: guidance reads Lark, `%import` included, and each backend
refuses what it cannot read before the engine sees it.
"""

from __future__ import annotations

from warden.guard.grammar_lint import lint
from warden.guard.rule import REJECT, Finding, Rule, RuleContext
from warden.guard.rules_regex import may_use_xgrammar
from warden.guard.rules_structured import param_name, structured_params


def _bad_grammar(body: dict, ctx: RuleContext) -> Finding | None:
    if not may_use_xgrammar(ctx.facts):
        return None
    params = structured_params(body)
    if params is None:
        return None
    values, prefix = params
    text = values.get("grammar")
    if not isinstance(text, str) or not text.strip() \
            or len(text) > ctx.limits.max_grammar_bytes:  # (so-huge-grammar's)
        return None
    problem = lint(text)
    param = param_name(prefix, "grammar")
    return Finding(f"{param} {problem}", param) if problem is not None else None


GRAMMAR_RULES: tuple[Rule, ...] = (
    Rule("so-grammar-lint",
         "a structured-output EBNF grammar that defines a rule twice, has no `root` rule, "
         "leaves a string, character class or parenthesis open or mixes in Lark lines "
         "(`?start:`, `%import`), or a Lark grammar with a directive (`%import`, "
         "`%ignore`), where the engine may compile it with xgrammar (its backend is "
         "xgrammar, auto or unknown)",
         "vllm-project/vllm#43920 (`root` defined twice, after a valid grammar: EngineCore "
         "died; fixed in 0.26.0), #16911 (a Lark grammar with `?start:` and `%import` "
         "killed 0.8.4's engine)", (0, 26, 0), REJECT,
         frozenset({"structured_outputs", "guided_grammar"}), _bad_grammar),
)
