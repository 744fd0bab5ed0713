"""A structured-output grammar read for what makes xgrammar refuse it: a cheap lint by lines
and brackets, not a parser.

vLLM reads a grammar as Lark when no line (its comments cut at `#` or `//`) holds `::=`, and
as EBNF (GBNF, xgrammar's `from_ebnf`) otherwise; this reads it the same way. An EBNF grammar
is refused when it defines a rule twice, has no `root` rule (xgrammar starts there), leaves a
string, a character class or a parenthesis open, or carries Lark lines (`?start: ...`,
`name: ...`, `%import ...`), which EBNF has no reading for. A Lark grammar is refused for its
directives (`%import`, `%ignore`, ...): vLLM's conversion to EBNF has no reading for them and
leaves what they name undefined.

Linear in the grammar's length (regex jumps between the characters that matter, each regex a
plain character class), and it never raises on any string.
"""

from __future__ import annotations

import re

_DEFINITION = re.compile(r"[ \t]*([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*::=")
_LARK_RULE = re.compile(r"[ \t]*\??[A-Za-z_][A-Za-z0-9_]*(?:\.\d+)?[ \t]*:(?!:=)")
_DIRECTIVE = re.compile(r"[ \t]*%([A-Za-z]+)")
_SPECIAL = re.compile(r'["\[()#]')
_IN_STRING = re.compile(r'["\\\n]')
_IN_CLASS = re.compile(r"[\]\\\n]")


def _uncommented(line: str) -> str:
    """A line without its comment, cut where vLLM cuts it (at the first `#` or `//`)."""
    cut = [at for at in (line.find("#"), line.find("//")) if at >= 0]
    return line[:min(cut)] if cut else line


def is_lark(text: str) -> bool:
    return not any("::=" in _uncommented(line) for line in text.split("\n"))


def lint(text: str) -> str | None:
    """What makes xgrammar refuse `text`, or None when the lint sees nothing."""
    if is_lark(text):
        return _lark(text)
    return _brackets(text) or _lines(text)


def _lark(text: str) -> str | None:
    for number, line in enumerate(text.split("\n"), 1):
        directive = _DIRECTIVE.match(line)
        if directive:
            return (f"uses Lark's %{directive.group(1)} directive (line {number}), which "
                    "vLLM's conversion of Lark for xgrammar cannot read")
    return None


def _lines(text: str) -> str | None:
    defined: set[str] = set()
    for number, line in enumerate(text.split("\n"), 1):
        definition = _DEFINITION.match(line)
        if definition:
            name = definition.group(1)
            if name in defined:
                return f"defines the rule {name!r} twice (line {number})"
            defined.add(name)
        elif _DIRECTIVE.match(line) or _LARK_RULE.match(line):
            return (f"mixes Lark syntax into an EBNF grammar (line {number}: "
                    f"{line.strip()[:40]!r})")
    return None if "root" in defined else "has no root rule (xgrammar starts from root)"


def _brackets(text: str) -> str | None:
    """A string, a character class or a parenthesis left open (or one closed that was not
    open). Strings and classes end on their line; comments run from `#` to the line's end."""
    depth, at, end = 0, 0, len(text)
    while at < end:
        found = _SPECIAL.search(text, at)
        if found is None:
            break
        char, at = found.group(), found.end()
        if char == "#":
            newline = text.find("\n", at)
            at = end if newline < 0 else newline + 1
        elif char in "\"[":
            inside = _IN_STRING if char == '"' else _IN_CLASS
            while True:
                stop = inside.search(text, at)
                if stop is None or stop.group() == "\n":
                    kind = "string" if char == '"' else "character class"
                    return f"leaves a {kind} open (at character {found.start()})"
                at = stop.end() + (stop.group() == "\\")
                if stop.group() != "\\":
                    break
        elif char == "(":
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                return f"closes a parenthesis that is not open (at character {found.start()})"
    if depth:
        return f"leaves {depth} parenthes{'is' if depth == 1 else 'es'} open"
    return None
