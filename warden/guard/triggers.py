"""Which rules a request triggers (pure: rules and a parsed body in, the rules to run out).

A rule runs when the body holds one of its top-level `keys`, one of its `nested` triggers,
or is at least its `min_body` bytes, or always (`always`: custom rules). Most requests trigger
none, so the test of a body must cost little and must not be fooled.

Nested triggers (what nests: media parts, embedding parts, message text) are found by one walk
of the parsed body's objects and lists (`NestedScan`), not by searching the raw bytes. Each is:
- a name, `input_audio`: a key, or a short string value (a part's `type`), equal to it;
- a suffix, `*_url`: a key or short string value ending with it;
- one character, `<`: a string value holding it.
The walk sees decoded strings, so a JSON escape (`"image\\u005furl"`) cannot hide a key, and
it costs per object, list and string (a chat request with a 10 KB prompt has about twenty
strings), not per byte: on CPython 3.11 a `bytes.find` of a needle longer than one byte is a
loop of ~2-3 instructions a byte, and the four byte markers this replaced cost ~88k
instructions per 10 KB of prompt (`bench.instructions --kind prompt`). A character is looked
for with `str.find`, which is a memchr on ASCII and Latin-1 text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Final, cast

from warden.guard.rule import Rule

# The longest string value compared with the names (longer values are texts, not a `type`).
SHORT: Final = 64
# How many short strings' verdicts are remembered (keys and types repeat from request to
# request, and the JSON parser hands out the same key objects, their hashes kept: a look-up
# is ~50 instructions where the tests are ~250). Bounded against bodies of unique strings.
MEMO_SIZE: Final = 4096


class NestedScan:
    """The nested triggers (as declared: `input_audio`, `*_url`, `<`) a parsed body holds."""

    def __init__(self, triggers: Iterable[str]):
        declared = sorted(set(triggers))
        self.count = len(declared)
        self._names = frozenset(t for t in declared if len(t) > 1 and not t.startswith("*"))
        self._suffixes = tuple((t[1:], t) for t in declared if t.startswith("*"))
        self._chars = tuple(t for t in declared if len(t) == 1)
        self._memo: dict[str, tuple[str, ...]] = {}

    def found(self, body: dict) -> set[str]:
        """The triggers `body` holds (stops once it holds them all)."""
        found: set[str] = set()
        stack: list[object] = [body]
        while stack:
            node = stack.pop()
            if type(node) is dict:  # (cast: compiled, the loops are then native)
                for key, value in cast("dict[str, object]", node).items():
                    self._short(key, found)
                    self._value(value, found, stack)
            else:  # (only dicts and lists are pushed)
                for value in cast("list[object]", node):
                    self._value(value, found, stack)
            if len(found) == self.count:
                break
        return found

    def _value(self, value: object, found: set[str], stack: list[object]) -> None:
        if type(value) is str:
            text = cast("str", value)
            if len(text) <= SHORT:
                self._short(text, found)
            else:  # a text: names do not apply, characters do
                for char in self._chars:
                    if text.find(char) >= 0:
                        found.add(char)
        elif type(value) is dict or type(value) is list:
            stack.append(value)

    def _short(self, text: str, found: set[str]) -> None:
        """A key or a short value, tested against every trigger (a key holding a character
        counts too, as it did in the raw body)."""
        hits = self._memo.get(text)
        if hits is None:
            hits = self._in(text)
            if len(text) <= SHORT and len(self._memo) < MEMO_SIZE:  # (a key may be long)
                self._memo[text] = hits
        if hits:
            found.update(hits)

    def _in(self, text: str) -> tuple[str, ...]:
        hits = [text] if text in self._names else []
        for suffix, declared in self._suffixes:
            if text.endswith(suffix):
                hits.append(declared)
        for char in self._chars:
            if text.find(char) >= 0:
                hits.append(char)
        return tuple(hits)


class RuleIndex:
    """The rules by what triggers them (each a rule's position in `rules`): a request runs only
    the ones it triggers, in order, not a test of every rule."""

    def __init__(self, rules: Sequence[Rule]):
        self.rules = tuple(rules)
        positions = list(enumerate(self.rules))
        self.keys = frozenset().union(*(rule.keys for rule in self.rules))
        self.always = any(rule.always for rule in self.rules)
        nested = {t for rule in self.rules for t in rule.nested}
        self.scan = NestedScan(nested) if nested else None
        self._by_nested = {t: frozenset(i for i, rule in positions if t in rule.nested)
                           for t in nested}
        self._by_key = {key: frozenset(i for i, rule in positions if key in rule.keys)
                        for key in self.keys}
        self._always = frozenset(i for i, rule in positions if rule.always)
        self._by_size = tuple((rule.min_body, i) for i, rule in positions if rule.min_body)
        # The smallest body a size-triggered rule looks at (none: larger than any body).
        self.min_body = min((rule.min_body for rule in self.rules if rule.min_body),
                            default=sys.maxsize)
        self.nested_rules = tuple(rule for rule in self.rules if rule.nested)

    def nested_in(self, body: dict) -> set[str]:
        """The nested triggers `body` holds (empty when no rule has any)."""
        scan = self.scan
        return scan.found(body) if scan is not None else set()

    def ruled(self, body: dict, nested: set[str], size: int) -> bool:
        """Whether `body` (of `size` bytes, holding the `nested` triggers) triggers any rule."""
        return bool(nested) or self.always or size >= self.min_body \
            or not self.keys.isdisjoint(body)

    def triggered(self, body: dict, nested: set[str], size: int) -> list[Rule]:
        """The rules `body` triggers, in order."""
        found: set[int] = set(self._always)
        by_key = self._by_key
        for key in body:
            positions = by_key.get(key)
            if positions is not None:
                found.update(positions)
        for trigger in nested:
            found.update(self._by_nested[trigger])
        for min_body, position in self._by_size:
            if size >= min_body:
                found.add(position)
        rules = self.rules
        return [rules[i] for i in sorted(found)]
