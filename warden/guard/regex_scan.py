"""A regular expression read for its shape, in one pass, without compiling or running it.

What it finds:
- `error`: what no regex dialect accepts (Python's, which vLLM, outlines and
  lm-format-enforcer read; ECMA-262, which JSON Schema patterns are written in; xgrammar's):
  an unbalanced parenthesis, an unterminated class or group name, a trailing backslash, a
  quantifier with nothing to repeat (`*a`, `(|+a)`, `^*`) or after another (`a**`).
  Dialect-specific forms (`\\p{L}`, `(?<name>...)`, `[^]`, possessive `a*+`) are not errors.
- `nested`: an unbounded repetition of something that can match one run of text in more than
  one way: a group whose branch repeats without bound with nothing else required beside it
  (`(a+)+`, `(a*)*`, `(\\w+\\s?)+`, star height 2 of that kind), or whose alternatives match
  the same text (`(a|a)*`, `(\\d|\\w)+`). Backtracking matchers take exponential time on
  them and automaton builders blow up; `("[^"]*",)*` (a required delimiter) is not nested.
- `rewritten`: the same pattern without its empty alternatives (`(|X)` -> `(X)?`,
  `(|X)+` -> `(X)*`, `|X` -> `(?:X)?`), which match the same strings, when that holds
  exactly: not with backreferences, conditionals, possessive or atomic repetitions, inline
  flag groups, or an empty alternative in a lookaround. Group numbers are kept.

One pass over the pattern, no recursion (nesting depth costs a list entry), no regex of our
own that backtracks; it never raises on any string. A pass costs a microsecond or two per
token (a run of plain characters is one): a pattern of more than `steps` tokens is not judged
(`judged` False, nothing found), so no pattern costs more than that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from warden.guard import regex_sets
from warden.guard.regex_parts import Atom, Branch, Group, ambiguous, optional_count

_PLAIN = re.compile(r"[^\\\[()|*+?{^$.]+")
_COUNT = re.compile(r"\{(\d+)(,(\d*))?\}|\{,(\d+)\}")
_CLASS_BODY = re.compile(r"(?:\\.|[^\]\\])*\]", re.S)  # (its alternatives start apart)
_FLAGS = re.compile(r"\(\?[aiLmsux]*(?:-[imsx]*)?([:)])")
_ANCHOR_ESCAPES = frozenset("bBAZzG")


@dataclass
class Shape:
    error: str | None = None
    nested: str | None = None
    empty_alternative: bool = False
    rewritten: str | None = None
    depth: int = 0
    steps: int = 0                # tokens read
    judged: bool = True           # False: longer than the scan's budget, not read to its end


class _Scan:
    def __init__(self, pattern: str, steps: int):
        self.pattern, self.steps = pattern, steps
        self.shape = Shape()
        self.stack = [Group(-1, "plain", branches=[Branch(0)])]
        self.pending: Atom | None = None
        self.edits: list[tuple[int, int, str]] = []
        self.inexact = False

    def fail(self, message: str, at: int) -> int:
        self.shape.error = f"{message} at position {at}"
        return len(self.pattern)

    def run(self) -> Shape:
        pattern, end, i, steps = self.pattern, len(self.pattern), 0, 0
        while i < end and self.shape.error is None:
            steps += 1
            if steps > self.steps:
                return Shape(steps=steps, judged=False)
            char = pattern[i]
            if char in "*+?":
                i = self.quantify(i, i + 1, char != "+", char != "?")
                continue
            if char == "{" and (count := _COUNT.match(pattern, i)):
                low = count.group(1) if count.group(4) is None else "0"
                unbounded = count.group(2) is not None and not count.group(3)
                i = self.quantify(i, count.end(), not low.strip("0"), unbounded)
                continue
            self.commit()
            if char == "(":
                i = self.open(i)
            elif char == ")":
                i = self.close(i)
            elif char == "|":
                self.end_branch(i)
                self.stack[-1].separators.append(i)
                self.stack[-1].branches.append(Branch(i + 1))
                i += 1
            elif char == "[":
                i = self.bracket(i)
            elif char == "\\":
                i = self.escape(i)
            elif char in "^$":
                self.pending, i = Atom(i, nullable=True, anchor=True), i + 1
            elif char == ".":
                self.pending, i = Atom(i, chars=regex_sets.DOT), i + 1
            else:
                run = _PLAIN.match(pattern, i)
                stop = run.end() if run else i + 1
                if stop - i > 1:
                    self.add(Atom(i))  # (all but the last: a quantifier takes only that)
                    branch = self.stack[-1].branches[-1]
                    branch.elements += stop - i - 2
                    branch.required += stop - i - 2
                self.pending, i = Atom(stop - 1, chars=((ord(pattern[stop - 1]),) * 2,)), stop
        self.shape.steps = steps
        if self.shape.error is None:
            self.commit()
            if len(self.stack) > 1:
                self.fail("missing ), unterminated subpattern", self.stack[-1].start)
            else:
                self.finish()
        return self.shape

    def quantify(self, i: int, stop: int, nullable: bool, unbounded: bool) -> int:
        atom = self.pending
        if atom is None or atom.anchor:
            return self.fail("nothing to repeat", i)
        if atom.quantified:
            return self.fail("multiple repeat", i)
        modified = stop + (self.pattern[stop:stop + 1] in ("?", "+"))
        if self.pattern[stop:modified] == "+":
            self.inexact = True  # possessive: what it matches depends on backtracking
        atom.quantified, atom.quantifier = True, (i, stop, modified)
        atom.nullable = atom.nullable or nullable
        atom.chars = None
        group = atom.group
        if unbounded and group is not None and group.kind != "look":
            if any(branch.splittable for branch in group.branches):
                self.nest(atom, modified, "repeats without bound a group that itself "
                          "repeats without bound")
            elif ambiguous(self.pattern, group):
                self.nest(atom, modified, "repeats without bound alternatives that match "
                          "the same text")
        atom.repeats = atom.repeats or (unbounded and (group is None or group.kind != "look"))
        return modified

    def nest(self, atom: Atom, stop: int, message: str) -> None:
        if self.shape.nested is None:
            text = self.pattern[atom.start:stop]
            shown = text if len(text) <= 60 else text[:28] + "..." + text[-28:]
            self.shape.nested = f"{shown!r} {message}"

    def commit(self) -> None:
        atom, self.pending = self.pending, None
        if atom is not None:
            self.add(atom)
            if atom.group is not None:
                self.empty_alternatives(atom, atom.group)

    def add(self, atom: Atom) -> None:
        branch = self.stack[-1].branches[-1]
        branch.chars = atom.chars if branch.elements == 0 else None
        branch.elements += 1
        branch.required += not atom.nullable
        branch.repeaters += atom.repeats
        branch.required_repeaters += atom.repeats and not atom.nullable

    def end_branch(self, i: int) -> None:
        self.stack[-1].branches[-1].end = i

    def open(self, i: int) -> int:
        pattern = self.pattern
        kind, body = "capture", i + 1
        if pattern.startswith("(?", i):
            if pattern.startswith(("(?#", "(?P="), i):  # a comment; a backreference
                close = pattern.find(")", i)
                if close < 0:
                    return self.fail("missing ), unterminated group", i)
                if pattern[i + 2] == "P":
                    self.inexact, self.pending = True, Atom(i)
                return close + 1
            flags = _FLAGS.match(pattern, i)
            if flags is not None and flags.group(1) == ")":
                self.inexact = True  # inline flags: the pattern may not be wrapped
                self.pending = Atom(i, nullable=True, anchor=True)
                return flags.end()
            kind, body = "plain", (flags.end() if flags else i + 2)
            if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
                kind, body = "look", i + 3 + pattern.startswith("(?<", i)
            elif pattern.startswith(("(?P<", "(?<", "(?'"), i):
                close = pattern.find("'" if pattern[i + 2] == "'" else ">", i + 3)
                if close < 0:
                    return self.fail("missing >, unterminated name", i)
                kind, body = "capture", close + 1
            elif pattern.startswith(("(?>", "(?("), i):
                self.inexact = True  # an atomic group; a conditional
                body = i + 3 if pattern[i + 2] == ">" else i + 2
        self.stack.append(Group(i, kind, branches=[Branch(body)]))
        self.shape.depth = max(self.shape.depth, len(self.stack) - 1)
        return body

    def close(self, i: int) -> int:
        if len(self.stack) == 1:
            return self.fail("unbalanced parenthesis", i)
        self.end_branch(i)
        group = self.stack.pop()
        group.close = i
        branches = group.branches
        sets = [branch.chars for branch in branches]
        chars = regex_sets.merged([r for s in sets if s is not None for r in s]) \
            if all(s is not None for s in sets) else None
        self.pending = Atom(group.start, group=group, chars=chars,
                             nullable=group.kind == "look" or any(b.required == 0
                                                                 for b in branches),
                             repeats=group.kind != "look" and any(b.splittable
                                                                  for b in branches))
        return i + 1

    def bracket(self, i: int) -> int:
        pattern, start = self.pattern, i + 1
        start += pattern.startswith("^", start)
        leading = pattern.startswith("]", start)  # literal here; the class's end in ECMA-262
        body = _CLASS_BODY.match(pattern, start + leading)
        stop = body.end() if body else (start + 1 if leading else -1)
        if stop < 0:
            return self.fail("unterminated character set", i)
        self.pending = Atom(i, chars=regex_sets.bracket(pattern, i, stop))
        return stop

    def escape(self, i: int) -> int:
        pattern = self.pattern
        if i + 1 >= len(pattern):
            return self.fail("a trailing backslash", i)
        letter = pattern[i + 1]
        if letter in "123456789" or (letter == "k" and pattern[i + 2:i + 3] in ("<", "'", "{")):
            self.inexact = True  # a backreference
            stop = i + 2
            while stop < len(pattern) and (pattern[stop].isdigit() if letter != "k"
                                           else pattern[stop - 1] not in ">'}"):
                stop += 1
            self.pending = Atom(i)
            return stop
        if letter in _ANCHOR_ESCAPES:
            self.pending = Atom(i, nullable=True, anchor=True)
            return i + 2
        chars, stop = regex_sets.escape(pattern, i + 1)
        self.pending = Atom(i, chars=chars)
        return stop

    def empty_alternatives(self, atom: Atom, group: Group) -> None:
        """Edits that drop `group`'s empty alternatives and make it optional instead."""
        if not self.separate(group):
            return
        if group.kind == "look":
            self.inexact = True
            return
        start, count, stop = atom.quantifier or (group.close + 1,) * 3
        self.edits.append((start, stop, optional_count(self.pattern[start:count]) +
                           self.pattern[count:stop]))

    def separate(self, group: Group) -> bool:
        """Note the separators to delete so that no alternative of `group` is empty: one is
        kept only between two alternatives that match something."""
        branches = group.branches
        if len(branches) < 2 or all(branch.elements for branch in branches):
            return False
        self.shape.empty_alternative = True
        seen = branches[0].elements > 0
        for separator, branch in zip(group.separators, branches[1:], strict=True):
            if not (branch.elements and seen):
                self.edits.append((separator, separator + 1, ""))
            seen = seen or branch.elements > 0
        return True

    def finish(self) -> None:
        top = self.stack[0]
        self.end_branch(len(self.pattern))
        if self.separate(top):
            self.edits += [(0, 0, "(?:"), (len(self.pattern), len(self.pattern), ")?")]
        if not self.shape.empty_alternative or self.inexact:
            return
        out, at = [], 0
        for start, stop, text in sorted(self.edits):
            out += [self.pattern[at:start], text]
            at = stop
        self.shape.rewritten = "".join(out) + self.pattern[at:]


STEPS = 50_000  # tokens judged in one pattern (a tenth of a second, at most)


def scan(pattern: str, steps: int = STEPS) -> Shape:
    """The shape of `pattern` (see the module's description), read in at most `steps`
    tokens."""
    return _Scan(pattern, steps).run()
