"""Regexes and grammars read for what grammar engines choke on: NUL characters, and counted
repetitions an engine expands into copies of what they repeat.

A NUL anywhere in a pattern reaches xgrammar's regex converter as the end of a C string: a
leading one made it read out of bounds and kill the process with SIGSEGV, which no `except`
catches (mlc-ai/xgrammar#850). A counted repetition `x{m,n}` is n copies of `x` to an engine
that builds an automaton (and to xgrammar before it learnt a repetition node,
mlc-ai/xgrammar#368); nested ones multiply: `(a{1000}){1000}` is a million.
"""

from __future__ import annotations

import re

NUL = "\x00"
_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")       # x{m}, x{m,}, x{m,n}
_LARK_COUNT = re.compile(r"~\s*(\d+)(?:\s*\.\.\s*(\d+))?")  # Lark's item ~ m, item ~ m..n
_BIG = 10 ** 18  # a count with more digits than this is "huge" (and int() stays cheap)


def _count(low: str, high: str | None) -> int:
    """The copies a repetition makes: its upper bound, or its lower one when unbounded."""
    text = high if high else low
    return _BIG if len(text) > 18 else int(text)


def repetition(pattern: str, limit: int, grammar: bool = False) -> int:
    """The most copies of one atom that `pattern`'s counted repetitions ask for, nested ones
    multiplied; counting stops past `limit`. Braces that are not a count (`\\p{L}`, `{a}`)
    count for nothing. With `grammar`, `pattern` is an EBNF/GBNF or Lark grammar: quoted
    literals are skipped and Lark's `~ m..n` counts too. One pass, no recursion."""
    groups: list[int] = []   # the enclosing groups' largest product so far
    inner = 0                # this group's largest product so far
    last = 1                 # the product of the atom just read (what a count multiplies)
    i, end = 0, len(pattern)
    while i < end:
        char = pattern[i]
        if char == "\\":
            i, last = i + 2, 1
            continue
        if char == "[":
            i, last = _class_end(pattern, i + 1), 1
            continue
        if grammar and char in "\"'":
            i, last = _literal_end(pattern, i + 1, char), 1
            continue
        count = None
        if char == "{":
            found = _COUNT.match(pattern, i)
            if found:
                count, i = _count(found.group(1), found.group(2)), found.end()
        elif grammar and char == "~":
            found = _LARK_COUNT.match(pattern, i)
            if found:
                count, i = _count(found.group(1), found.group(2)), found.end()
        if count is not None:
            last = last * count
            inner = max(inner, last)
            if inner > limit:
                return inner
            continue
        if char == "(":
            groups.append(inner)
            inner = 0
        elif char == ")" and groups:
            last = max(inner, 1)
            inner = max(groups.pop(), inner)
        else:
            last = 1
        i += 1
    return max(inner, *groups) if groups else inner


def _class_end(pattern: str, i: int) -> int:
    """The index past the `]` closing a character class opened before `i`."""
    end = len(pattern)
    if i < end and pattern[i] == "^":
        i += 1
    if i < end and pattern[i] == "]":  # a leading ] is literal
        i += 1
    while i < end and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _literal_end(pattern: str, i: int, quote: str) -> int:
    end = len(pattern)
    while i < end and pattern[i] != quote:
        i += 2 if pattern[i] == "\\" else 1
    return i + 1
