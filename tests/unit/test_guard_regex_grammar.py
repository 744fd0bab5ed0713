"""The regex and grammar rules: each one's crashing body (the source's reproducer) and its
legitimate neighbour; the regex scanner (what it calls an error Python refuses too, what it
calls nested, its rewrites match the same strings) and the grammar lint on real grammars; and
hostile patterns and grammars, which never make a rule raise."""

from __future__ import annotations

import copy
import random
import re

import pytest

from tests.unit.test_guard_request_rules import CHAT, ROUTED, admit, expect, guard_for
from tests.unit.test_guard_rules import backend, chat
from warden.config.schema import GuardSpec
from warden.guard.grammar_lint import lint
from warden.guard.guard import Guard, Outcome
from warden.guard.regex_scan import scan
from warden.guard.rule import NORMALIZE, Finding, Rule, RuleContext
from warden.guard.rules_regex import REGEX_RULES, shapes


def so(**fields) -> dict:
    return chat(structured_outputs=fields)


def pattern_tool(pattern: str, choice: object = "required") -> dict:
    """CVE-2025-48944's request (a second tool, g, beside f when `choice` names a tool)."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "string", "pattern": pattern}}}}}]
    if isinstance(choice, dict):
        tools.append({"type": "function", "function": {"name": "g", "parameters": {
            "type": "object"}}})
    return chat(tools=tools, tool_choice=choice)


NAMED_G = {"type": "function", "function": {"name": "g"}}


def pattern_schema(pattern: str) -> dict:
    return chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}}}})


JSON_GBNF = r'''root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? ws
# optional space (a comment with an open "quote and (parenthesis)
ws ::= | " " | "\n" [ \t]{0,20}
'''
LARK = "?start: expression\n?expression: NUMBER\n%import common.NUMBER"

# (rule, the model's backend, an affected version, crashing body, what enforce makes of it
#  (None: rejected), its neighbour)
CASES = [
    ("so-grammar-lint", None, "0.21.0", so(grammar='root ::= "a"\nroot ::= "b"'), None,
     so(grammar='root ::= "a" | "b"')),
    ("so-grammar-lint", None, "0.8.4", chat(guided_grammar=LARK), None,
     chat(guided_grammar="root ::= [0-9]+")),
    ("so-grammar-lint", "auto", "0.25.1", so(grammar='value ::= "a" | "b"'), None,
     so(grammar=JSON_GBNF)),
    ("so-grammar-lint", "xgrammar", "0.25.1", so(grammar='root ::= ("a" | "b"'), None,
     so(grammar=LARK.replace("\n%import common.NUMBER", "\nNUMBER: /[0-9]+/"))),
    ("so-schema-invalid", None, "0.8.5", pattern_tool("["), None, pattern_tool("^[a-z]+$")),
    ("so-schema-invalid", None, "0.8.5", pattern_tool("("), None,
     pattern_tool("(", NAMED_G)),
    ("so-regex-redos", None, "0.23.0", so(regex="(a+)+b"), None, so(regex="a+b")),
    ("so-regex-redos", None, "0.11.0", pattern_schema(r"^(\w+\s?)+$"), None,
     pattern_schema(r"^[A-Z]{2}(-\d+)*$")),
    ("so-regex-redos-lmfe", "lm-format-enforcer", "0.32.0", so(regex="(a+)+b"), None,
     so(regex="a+b")),
    ("so-regex-empty-alt", None, "0.25.0", so(regex="^(|.*)$"), so(regex="^(.*)?$"),
     so(regex="^(.*)$")),
    ("so-regex-empty-alt", "auto", "0.11.0", chat(guided_regex="(?P<sign>|-)\\d+"),
     chat(guided_regex="(?P<sign>-)?\\d+"), chat(guided_regex="(?P<sign>-)?\\d+")),
    ("so-regex-empty-alt-backref", None, "0.25.0", so(regex=r"(|a)b\1"), None,
     so(regex=r"(a)b\1")),
]


@pytest.mark.parametrize(("rule_id", "backend_name", "version", "crashing", "made",
                          "neighbour"), CASES)
def test_each_rule_catches_its_crash_and_spares_its_neighbour(rule_id, backend_name, version,
                                                                crashing, made, neighbour):
    expect(rule_id, CHAT, backend_name, version, crashing, made, neighbour, None)


def test_tool_patterns_are_judged_only_where_the_engine_compiles_them():
    """vLLM compiles a tool's parameters only when tool_choice forces a call (every tool for
    "required", the named one for a named function): the same tool with "auto" or "none",
    or beside another named tool, is only shown to the model."""
    guard = guard_for()
    for choice in ("auto", "none", None):
        assert admit(guard, pattern_tool("[", choice), [backend("0.8.5")]) is None
    assert admit(guard, pattern_tool("(a+)+", "required"), [backend("0.8.5")]).rejection


def test_other_backends_and_fixed_versions_are_left_alone():
    for backend_name in ("guidance", "outlines"):
        guard = guard_for(backend_name)
        for body in (chat(guided_grammar=LARK), so(grammar='root ::= "a"\nroot ::= "b"'),
                     so(regex="^(|.*)$")):
            assert admit(guard, copy.deepcopy(body), [backend("0.21.0")]) is None
    guard = guard_for()
    assert admit(guard, so(grammar='root ::= "a"\nroot ::= "b"'), [backend("0.26.0")]) is None
    assert admit(guard, so(regex="(a+)+b"), [backend("0.24.0")]) is None
    assert admit(guard_for("xgrammar"), so(regex="(a+)+b"), [backend("0.32.0")]) is None
    assert ROUTED not in [case[4] for case in CASES]


@pytest.mark.parametrize(("pattern", "error"), [
    ("[", "unterminated character set"), ("(", "missing )"), (")", "unbalanced"),
    ("a**", "multiple repeat"), ("foo**", "multiple repeat"), ("*a", "nothing to repeat"),
    ("x|+y", "nothing to repeat"), ("^*", "nothing to repeat"), ("abc\\", "trailing"),
    ("(?P<n", "unterminated name"), ("a{2}{3}", "multiple repeat")])
def test_what_no_dialect_reads_is_an_error(pattern, error):
    assert error in (scan(pattern).error or "")
    with pytest.raises(re.error):
        re.compile(pattern)


LEGITIMATE = [r"^[\w.+-]+@[\w-]+\.[\w.-]+$", r"\d{4}-\d{2}-\d{2}", r'("[^"]*",\s*)*"[^"]*"',
              r"[a-z]+(-[a-z]+)*", r"(\.\d+)*", r"(.|\n)*", r"(a|b)*c", r"\p{L}+", r"[^]",
              r"(?<year>\d{4})", r"a*+b", r"(https?://)?[\w.]+(/[\w.-]*)*", r"[]a]+",
              r"(\d+,)*\d+", r"((ab){3}){2}", r"(?:yes|no|maybe)", r"(?i:abc)", r"\bword\b"]


@pytest.mark.parametrize("pattern", LEGITIMATE)
def test_legitimate_patterns_are_neither_errors_nor_nested(pattern):
    shape = scan(pattern)
    assert shape.error is None and shape.nested is None and not shape.empty_alternative


@pytest.mark.parametrize("pattern", [r"(a+)+b", r"(a*)*", r"(a|a)*", r"(\d|\w)+",
                                     r"(\w+\s?)+$", r"(\s*\w+)*", r"((a+){2})+", r"(.*)+",
                                     r"((a|b)|a)*", r"(?:[a-z]|[a-z0-9])+"])
def test_nested_unbounded_repetitions_are_found(pattern):
    assert scan(pattern).nested


@pytest.mark.parametrize(("pattern", "rewritten"), [
    ("^(|.*)$", "^(.*)?$"), ("(|a)+", "(a)*"), ("(a||b){2,5}", "(a|b){0,5}"),
    ("|abc", "(?:abc)?"), ("(|a){3}?", "(a){0,3}?"), ("((|a)|b)", "((a)?|b)"),
    ("(?:x|)y", "(?:x)?y"), (r"(|a)\1", None), ("(?=|a)b", None), ("(?i)a|", None),
    ("(|a)*+", None)])
def test_empty_alternatives_are_rewritten_only_when_exact(pattern, rewritten):
    shape = scan(pattern)
    assert shape.empty_alternative and shape.rewritten == rewritten


@pytest.mark.filterwarnings("ignore::FutureWarning")  # (Python's notes on "[[" and "--")
def test_a_rewrite_matches_exactly_the_strings_the_pattern_matched():
    alphabet, rng, checked = "ab()|*+?{}2,", random.Random(7), 0
    for _ in range(20000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        shape = scan(pattern)
        if shape.rewritten is None:
            continue
        try:
            before, after = re.compile(pattern), re.compile(shape.rewritten)
        except re.error:
            continue
        for text in ("", "a", "b", "ab", "aa", "ba", "abab", "aab", "bbb", "aaaa"):
            assert bool(before.fullmatch(text)) == bool(after.fullmatch(text)), \
                (pattern, shape.rewritten, text)
        checked += 1
    assert checked > 100


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_every_error_the_scanner_reports_python_reports_too():
    alphabet, rng = "ab()[]{}|*+?^$.\\-,2:=!<>Pkwb'#", random.Random(3)
    for _ in range(20000):
        pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if scan(pattern).error is not None:
            with pytest.raises((re.error, RecursionError)):
                re.compile(pattern)


def test_a_pattern_longer_than_the_budget_is_not_judged():
    assert scan("(a|b)" * 20, steps=100).judged and scan("(a+)+b", steps=100).nested
    long = scan("(a+)+b" + "(a|b)" * 100, steps=100)
    assert not long.judged and long.nested is None and long.error is None
    assert scan("x" * 1_000_000, steps=3).judged  # (a run of plain characters is one token)


@pytest.mark.parametrize(("grammar", "problem"), [
    ('root ::= "a"\nroot ::= "b"', "defines the rule 'root' twice"),
    (LARK, "%import directive"), ('a ::= "x"', "no root rule"),
    ('root ::= "a', "string open"), ("root ::= [a-z", "character class open"),
    ('root ::= ("a"', "1 parenthesis open"), ('root ::= "a")', "not open"),
    ('root ::= x\n?x: "a"', "mixes Lark syntax"), ("root ::= x\n%ignore WS", "mixes Lark")])
def test_the_grammar_lint_names_what_xgrammar_refuses(grammar, problem):
    assert problem in (lint(grammar) or "")


def test_real_grammars_pass_the_lint():
    sql = ('?start: select_statement\n?select_statement: "SELECT " column " FROM " table\n'
           '?column: /[a-z_]+/\n?table: /[a-z_]+/')
    for grammar in (JSON_GBNF, sql, 'root ::= "yes" | "no"  # the answer',
                    'root ::= "\\"(" [#(] item\nitem ::= [0-9]+'):
        assert lint(grammar) is None, grammar


HOSTILE = ["(" * 100_000, ")" * 1000, "[" * 50_000, "\\" * 10_001, "(|" * 30_000,
           "(?P<" * 5000, "{" * 50_000, "((a+)+)" * 5000, "a" * 1_000_000, "\x00(|\x00)",
           "(?#" + "x" * 1000, "[\\", "\ud800(|a)", "(?(" * 1000]
GRAMMARS = ['"' * 10_000, "root ::= " + "(" * 100_000, "%" * 1000, "root ::=\n" * 50_000,
            "[" * 10_000 + "root ::= x", "::=", "?:\n%\n", "\\" * 1001, "root ::= \"\\"]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # (so-bad-regex compiles with Python)
@pytest.mark.parametrize("text", HOSTILE + GRAMMARS, ids=range(len(HOSTILE + GRAMMARS)))
def test_hostile_patterns_and_grammars_never_make_a_rule_raise(text):
    for backend_name in (None, "lm-format-enforcer"):
        guard = guard_for(backend_name, validation={"enabled": False})
        for body in (so(regex=text), chat(guided_regex=text), so(grammar=text),
                     chat(guided_grammar=text), pattern_schema(text),
                     so(whitespace_pattern=text, json={"type": "object"})):
            outcome = guard.judge(CHAT, "m", body, b"{}", [backend("0.11.0")])
            assert outcome is None or outcome.notes


def test_a_rule_after_a_rewrite_judges_the_body_as_rewritten():
    """What rules keep of a body for the next (`ctx.memo`: here the regex's shape) is dropped
    when a rule rewrites it: a later rule judges the regex the engine will get."""
    def find(body: dict, ctx: RuleContext) -> Finding | None:
        kept = shapes(body, ctx)   # (read, and kept, as the regex rules read it)
        return Finding("a plain regex", "structured_outputs") if kept else None

    def fix(body: dict) -> None:
        body["structured_outputs"]["regex"] = "(a+)+b"

    rewrite = Rule("test-rewrite", "", "", None, NORMALIZE,
                   frozenset({"structured_outputs"}), find, fix)
    redos = next(rule for rule in REGEX_RULES if rule.id == "so-regex-redos")
    outcome = Outcome()
    Guard(GuardSpec()).check(CHAT, "m", chat(structured_outputs={"regex": "ab"}),
                             [backend("0.11.0")], set(), 0, outcome, (rewrite, redos))
    assert outcome.rejection is not None
    assert "so-regex-redos" in outcome.rejection.message


def test_a_regex_costly_to_compile_is_parsed_only_and_a_long_one_not_checked(monkeypatch):
    """The check runs on the event loop: `re` compiles ranges character by character (200
    classes of all of Unicode under (?i) held the loop 1.8 s), and parses ~0.6 µs a byte."""
    from warden.guard import rules_structured

    compiled: list[str] = []
    rules_structured._regex_problem.cache_clear()
    monkeypatch.setattr(rules_structured.re, "compile", lambda p: compiled.append(p))
    ctx = None  # (the rule reads nothing of its context)
    wide = "(?i)" + "[\x00-\U0010ffff]" * 200
    assert rules_structured._bad_regex(so(regex=wide), ctx) is None and compiled == []
    assert rules_structured._bad_regex(so(regex=wide + "("), ctx).param == \
        "structured_outputs.regex"                       # (a parse error is still one)
    assert rules_structured._bad_regex(so(regex="[a-z]+"), ctx) is None
    assert compiled == ["[a-z]+"]
    uneven = rules_structured._bad_regex(so(regex="(?<=a+)" + wide[4:]), ctx)  # (as compiling
    assert uneven is not None and "look-behind" in uneven.message        # would have said)
    long = "(" * (rules_structured.REGEX_CHECKED + 1)     # (unclosed, but past the bound)
    assert rules_structured._bad_regex(so(regex=long), ctx) is None
    huge = rules_structured._bad_regex(so(regex=long[:-1] + "a{4294967296}"), ctx)
    assert huge is not None and "too large" in huge.message  # (past it: repeats searched)
