"""Operators' own rules from the config: conditions on JSON paths, and an action.

A path is dotted keys (`stream_options.include_usage`), with list indexes (`stop.0`) and `*`
for every element (`messages.*.role`). A condition holds when any value at its path satisfies
its predicate (`exists: false` when there is none); a rule matches when all its conditions
hold. Validated when the config loads (`spec_problems`: every mistake at once), like everything
else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from warden.guard.rule import NORMALIZE, Finding, Rule, RuleContext

if TYPE_CHECKING:
    from warden.config.schema import CustomRuleSpec

Predicate = Callable[[object], bool]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ordered(compare: Callable[[float, float], bool]) -> Callable[[object], Predicate]:
    def build(operand: object) -> Predicate:
        return lambda value: _number(value) and compare(value, operand)  # type: ignore[arg-type]
    return build


def _matches(operand: object) -> Predicate:
    pattern = re.compile(str(operand))
    return lambda value: isinstance(value, str) and pattern.search(value) is not None


def _longer_than(operand: object) -> Predicate:
    return lambda value: isinstance(value, str | list | dict) and len(value) > operand  # type: ignore[operator]


# name -> (what its operand must be, how it builds a predicate)
PREDICATES: dict[str, tuple[str, Callable[[object], Predicate]]] = {
    "eq": ("any", lambda operand: lambda value: value == operand),
    "ne": ("any", lambda operand: lambda value: value != operand),
    "gt": ("number", _ordered(lambda a, b: a > b)),
    "ge": ("number", _ordered(lambda a, b: a >= b)),
    "lt": ("number", _ordered(lambda a, b: a < b)),
    "le": ("number", _ordered(lambda a, b: a <= b)),
    "in": ("list", lambda operand: lambda value: value in operand),  # type: ignore[operator]
    "matches": ("regex", _matches),
    "longer_than": ("integer", _longer_than),
}


def split(path: str) -> list[str]:
    return path.split(".")


def values_at(node: object, segments: list[str]) -> Iterator[object]:
    """Every value at the path `segments` below `node`."""
    if not segments:
        yield node
        return
    head, rest = segments[0], segments[1:]
    if isinstance(node, dict):
        if head == "*":
            for value in node.values():
                yield from values_at(value, rest)
        elif head in node:
            yield from values_at(node[head], rest)
    elif isinstance(node, list):
        if head == "*":
            for value in node:
                yield from values_at(value, rest)
        elif head.isdigit() and int(head) < len(node):
            yield from values_at(node[int(head)], rest)


def _parents(body: dict, segments: list[str]) -> Iterator[tuple[dict | list, str]]:
    """(container, last segment) for every place the path's last segment would be in."""
    for parent in values_at(body, segments[:-1]):
        if isinstance(parent, dict | list):
            yield parent, segments[-1]


def delete_path(body: dict, path: str) -> None:
    segments = split(path)
    for parent, last in list(_parents(body, segments)):
        if isinstance(parent, dict):
            keys = list(parent) if last == "*" else [last]
            for key in keys:
                parent.pop(key, None)
        elif last == "*":
            parent.clear()
        elif last.isdigit() and int(last) < len(parent):
            del parent[int(last)]


def set_path(body: dict, path: str, value: object) -> None:
    """Set a plain dotted path (no `*`), creating the objects on the way."""
    node: dict = body
    *ancestors, last = split(path)
    for segment in ancestors:
        child = node.get(segment)
        if not isinstance(child, dict):
            child = node[segment] = {}
        node = child
    node[last] = value


def spec_problems(spec: Mapping[str, object]) -> list[str]:
    """Every reason the rule `spec` (its fields as given in the config, not yet validated)
    cannot work, each naming the field; the shapes pydantic checks (a mapping, a list, a
    string) are skipped here when wrong, as pydantic reports them."""
    problems: list[str] = []
    match = spec.get("match")
    if isinstance(match, dict):
        for path, predicates in match.items():
            if isinstance(path, str):
                problems += _condition_problems(path, predicates)
    action = spec.get("action")
    delete, rewrite = spec.get("delete") or [], spec.get("set") or {}
    rewrites = bool(delete or rewrite)
    if action == NORMALIZE and not rewrites:
        problems.append("action normalize needs `delete` or `set`")
    if isinstance(action, str) and action != NORMALIZE and rewrites:
        problems.append(f"`delete` and `set` belong to action normalize, not {action}")
    if isinstance(rewrite, dict) and any(isinstance(path, str) and "*" in split(path)
                                         for path in rewrite):
        problems.append("set: paths cannot contain `*`")
    return problems


def _condition_problems(path: str, predicates: object) -> list[str]:
    if not path or "" in split(path):
        return [f"match: {path!r} is not a path (a.b, a.*.b, a.0)"]
    if not isinstance(predicates, dict):
        return []
    problems = []
    for name, operand in predicates.items():
        problem = _operand_problem(name, operand)
        if problem is not None:
            problems.append(f"match.{path}{problem}")
    return problems


def _operand_problem(name: object, operand: object) -> str | None:
    """What is wrong with one predicate (`: reason` or `.name: reason`), or None."""
    if name == "exists":
        return None if isinstance(operand, bool) else ".exists: expected true or false"
    if not isinstance(name, str) or name not in PREDICATES:
        known = ", ".join(["exists", *PREDICATES])
        return f": unknown predicate {name!r} (one of {known})"
    kind = PREDICATES[name][0]
    if kind == "number" and not _number(operand):
        return f".{name}: expected a number"
    if kind == "integer" and (not isinstance(operand, int) or isinstance(operand, bool)):
        return f".{name}: expected an integer"
    if kind == "list" and not isinstance(operand, list):
        return f".{name}: expected a list"
    if kind == "regex":
        try:
            re.compile(str(operand))
        except re.error as e:
            return f".{name}: not a regex ({e})"
    return None


def _condition(path: str, predicates: dict[str, object]) -> Callable[[dict], bool]:
    segments = split(path)
    must_exist = predicates.get("exists")
    tests = [PREDICATES[name][1](operand) for name, operand in predicates.items()
             if name != "exists"]

    def holds(body: dict) -> bool:
        found = list(values_at(body, segments))
        if must_exist is not None and bool(found) != must_exist:
            return False
        return all(any(test(value) for value in found) for test in tests)
    return holds


def build_rule(spec: CustomRuleSpec) -> Rule:
    conditions = [_condition(path, predicates) for path, predicates in spec.match.items()]
    first_path = next(iter(spec.match))
    message = spec.message or f"matched custom guard rule {spec.id}"

    def find(body: dict, ctx: RuleContext) -> Finding | None:
        if all(condition(body) for condition in conditions):
            return Finding(message, first_path)
        return None

    def fix(body: dict) -> None:
        for path in spec.delete:
            delete_path(body, path)
        for path, value in spec.set.items():
            set_path(body, path, value)

    # A rule whose conditions all need a key present is skipped, like the built-in ones,
    # when the body has none of those keys; one that can match an absent key always runs.
    can_match_absent = any(predicates.get("exists") is False
                           for predicates in spec.match.values())
    keys = frozenset() if can_match_absent else frozenset(split(p)[0] for p in spec.match)
    return Rule(spec.id, spec.description or message, "custom (config)", None, spec.action,
                keys, find, fix if spec.action == NORMALIZE else None,
                always=can_match_absent, harm="refused by this gateway's policy")
