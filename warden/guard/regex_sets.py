"""The characters a one-character regex atom can match (a literal, an escape, `.`, a bracket
class), as sorted code point ranges, for telling whether two alternatives of a repetition can
both match the same character (`(a|a)*`, `(\\d|\\w)+`).

Classes are read as ASCII (`\\w` is `[0-9A-Za-z_]`) and without flags (no case folding, `.`
stops at a newline): a set is never larger than the engine's, so an overlap found here is
there too. What is not understood (`\\p{L}`, a class with nested sets) is None: unknown,
and no overlap is claimed for it.
"""

from __future__ import annotations

Ranges = tuple[tuple[int, int], ...]

TOP = 0x10FFFF
DIGIT: Ranges = ((48, 57),)
WORD: Ranges = ((48, 57), (65, 90), (95, 95), (97, 122))
SPACE: Ranges = ((9, 13), (32, 32))
_LITERAL_ESCAPES = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7, "0": 0}
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def merged(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= TOP:
        out.append((start, TOP))
    return tuple(out)


_CLASS_ESCAPES: dict[str, Ranges] = {
    "d": DIGIT, "w": WORD, "s": SPACE,
    "D": complement(DIGIT), "W": complement(WORD), "S": complement(SPACE)}
DOT: Ranges = complement(((10, 10),))


def escape(pattern: str, i: int) -> tuple[Ranges | None, int]:
    """The set of the escape whose letter is at `i` (after the backslash), and the index
    past it. A character class escape is its class; a code escape (`\\n`, `\\x41`) or an
    escaped punctuation mark is that one character; anything else is unknown."""
    char = pattern[i]
    if char in _CLASS_ESCAPES:
        return _CLASS_ESCAPES[char], i + 1
    if char in _LITERAL_ESCAPES:
        code = _LITERAL_ESCAPES[char]
        return ((code, code),), i + 1
    if char in _HEX_DIGITS:
        digits = pattern[i + 1:i + 1 + _HEX_DIGITS[char]]
        if len(digits) == _HEX_DIGITS[char] and all(c in "0123456789abcdefABCDEF"
                                                    for c in digits):
            code = int(digits, 16)
            return (((code, code),) if code <= TOP else None), i + 1 + len(digits)
        return None, i + 1
    if char in "pPN" and pattern[i + 1:i + 2] == "{":  # \p{L}, \N{NAME}: skip the braces
        close = pattern.find("}", i + 2)
        return None, (close + 1 if close >= 0 else len(pattern))
    if not char.isalnum():
        return ((ord(char), ord(char)),), i + 1
    return None, i + 1


def bracket(pattern: str, start: int, end: int) -> Ranges | None:
    """The set of the class `pattern[start:end]` (from `[` to past its `]`), or None."""
    i, stop = start + 1, end - 1
    negated = pattern[i:i + 1] == "^"
    i += negated
    parts: list[tuple[int, int]] = []
    first = True
    while i < stop:
        char = pattern[i]
        if char == "[" and not first:
            return None  # a nested set or a POSIX class: not read here
        if char == "\\":
            if i + 1 >= stop:
                return None
            letter = pattern[i + 1]
            found, i = escape(pattern, i + 1)
            if found is None or (negated and letter in _CLASS_ESCAPES):
                return None  # (the complement of an ASCII reading would be too large)
            low = found[0][0] if len(found) == 1 and found[0][0] == found[0][1] else None
            if low is None:
                parts.extend(found)
                first = False
                continue
        else:
            low, i = ord(char), i + 1
        first = False
        if pattern[i:i + 1] == "-" and i + 1 < stop:
            if pattern[i + 1] in "\\[":
                return None  # a range ending in an escape: not read here
            high = ord(pattern[i + 1])
            if high < low:
                return None
            parts.append((low, high))
            i += 2
        else:
            parts.append((low, low))
    ranges = merged(parts)
    return complement(ranges) if negated else ranges


def overlapping(sets: list[Ranges]) -> bool:
    """Whether any two of `sets` share a character (one sweep over all their ranges)."""
    edges = sorted((low, high, owner) for owner, ranges in enumerate(sets)
                   for low, high in ranges)
    reach, reacher = -1, -1
    for low, high, owner in edges:
        if low <= reach and owner != reacher:
            return True
        if high > reach:
            reach, reacher = high, owner
    return False
