"""A JSON schema checked for what grammar engines refuse, crash on or blow up: the keywords
they read, with the types JSON Schema gives them (draft 2020-12, with draft-07's forms), their
`$ref`s, and the sizes they expand.

Not a full validator: only the keywords a grammar engine compiles are judged, and only what
the metaschema says of them (`type` a name or a list of names, `properties` an object of
schemas, `required` a list of strings, `minLength` a non-negative integer, ...), plus what
cannot be satisfied at all (an empty `enum` or `anyOf`, `minItems` above `maxItems`), and a
`pattern` that no regex dialect reads (regex_scan: an unbalanced parenthesis, an unterminated
class). Unknown keywords, annotations and `format` values pass. `$ref`s are judged where they
are local JSON pointers (`#`, `#/$defs/x`, `#/definitions/x`): one that points at nothing, or
a chain of `$ref`s that comes back to itself with no schema in between, is refused. A
recursive schema (a tree whose nodes refer back through `properties` or `items`) is
legitimate and passes: each level of it consumes output, and the walk visits every node once
whatever refers to it.

The walk is iterative and stops after `max_nodes` nodes, and its patterns' shapes are read
within regex_scan.STEPS tokens in all, so no schema, however deep or large, costs more than
that. It never raises on odd input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from warden.guard.json_pointer import Path, pointer, resolve, show
from warden.guard.patterns import NUL, repetition
from warden.guard.regex_scan import STEPS, Shape, scan

INVALID, REF, BOUND, REPEAT, NUL_CHAR = "invalid", "ref", "bound", "repeat", "nul"
NESTED = "nested"  # a pattern repeating without bound what repeats without bound (`(a+)+`)
TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
INT64 = 2 ** 63 - 1  # integer bounds past this are refused by xgrammar (vllm-project/vllm#17894)
_SCHEMA = ("additionalProperties", "additionalItems", "not", "if", "then", "else", "contains",
           "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
           "minContains", "maxContains")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# Keys that are no schema content: a node with only these and a $ref is that $ref.
_NOT_CONTENT = frozenset({"$ref", "$id", "$schema", "$anchor", "$comment", "$defs", "definitions",
                          "title", "description", "default", "examples"})
_PAIRS = (("minLength", "maxLength"), ("minItems", "maxItems"),
          ("minProperties", "maxProperties"), ("minimum", "maximum"))


@dataclass(frozen=True)
class Problem:
    kind: str      # INVALID | REF | BOUND | REPEAT | NUL_CHAR | NESTED
    where: str     # a JSON pointer into the schema ("" is the schema itself)
    message: str


@dataclass(frozen=True)
class Bounds:
    max_repetition: int  # copies a count (maxLength, minItems, x{m,n}) may ask for
    max_nodes: int       # objects and arrays walked


def _number(value: object) -> bool:
    return type(value) in (int, float) and (type(value) is int or math.isfinite(value))


def _count(value: object) -> bool:
    """A non-negative integer as JSON Schema reads one (5.0 is an integer)."""
    if type(value) is int:
        return value >= 0  # type: ignore[operator]
    return type(value) is float and value >= 0 and value.is_integer()  # type: ignore[union-attr]


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _types(node: dict) -> set[str]:
    kind = node.get("type")
    return {kind} if isinstance(kind, str) else set(kind) if _names(kind) else set()


def _type_problem(kind: object) -> str | None:
    names = [kind] if isinstance(kind, str) else kind if _names(kind) else None
    if names is None or not names:
        return "must be a type name or a non-empty list of them"
    unknown = [name for name in names if name not in TYPES]
    return f"names an unknown type {unknown[0]!r}" if unknown else None


class _Walk:
    """One schema's walk: every subschema checked once, problems kept by kind (the first)."""

    def __init__(self, root: object, bounds: Bounds):
        self.root, self.bounds = root, bounds
        self.found: dict[str, Problem] = {}
        self.refs: dict[int, tuple[Path | None, object]] = {}  # id(node) -> (path, target)
        self.stack: list[tuple[object, Path | None]] = [(root, None)]
        self.shapes: dict[str, Shape] = {}  # each pattern scanned once, within STEPS in all
        self.steps = STEPS

    def note(self, kind: str, where: Path | None, message: str) -> None:
        if kind not in self.found:
            self.found[kind] = Problem(kind, pointer(where), message)

    def run(self) -> dict[str, Problem]:
        nodes = 0
        while self.stack:
            node, where = self.stack.pop()
            nodes += 1
            if nodes > self.bounds.max_nodes:
                self.note(BOUND, None, f"has more than {self.bounds.max_nodes} subschemas")
                break
            if isinstance(node, dict):
                self.schema(node, where)
            elif not isinstance(node, bool):
                self.note(INVALID, where, "a schema must be an object or a boolean")
        self.ref_cycles()
        return self.found

    def push(self, value: object, where: Path | None) -> None:
        self.stack.append((value, where))

    def schema(self, node: dict, where: Path | None) -> None:
        for key in _SCHEMA:
            if key in node:
                self.push(node[key], (where, key))
        for key in _SCHEMA_MAPS:
            if key in node:
                self.schema_map(node[key], (where, key), key)
        for key in _SCHEMA_LISTS:
            if key in node:
                self.schema_list(node[key], (where, key), key)
        if "items" in node:
            items = node["items"]
            if isinstance(items, list):  # draft-07's tuple form
                self.schema_list(items, (where, "items"), "items")
            else:
                self.push(items, (where, "items"))
        self.keywords(node, where)
        if "$ref" in node:
            self.ref(node, where)

    def schema_map(self, value: object, where: Path | None, key: str) -> None:
        if not isinstance(value, dict):
            self.note(INVALID, where, f"{key} must be an object of schemas")
            return
        if len(value) > self.bounds.max_nodes:
            self.note(BOUND, where, f"has more than {self.bounds.max_nodes} subschemas")
            return
        for name, schema in value.items():
            if key == "patternProperties":
                self.pattern(name, (where, name))
            self.push(schema, (where, name))

    def schema_list(self, value: object, where: Path | None, key: str) -> None:
        if not isinstance(value, list) or (not value and key != "prefixItems"):
            self.note(INVALID, where, f"{key} must be a non-empty list of schemas")
            return
        if len(value) > self.bounds.max_nodes:
            self.note(BOUND, where, f"has more than {self.bounds.max_nodes} subschemas")
            return
        for i, schema in enumerate(value):
            self.push(schema, (where, str(i)))

    def keywords(self, node: dict, where: Path | None) -> None:
        if "type" in node and (problem := _type_problem(node["type"])):
            self.note(INVALID, (where, "type"), f"type {problem}")
        if "required" in node and not _names(node["required"]):
            self.note(INVALID, (where, "required"), "required must be a list of strings")
        if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
            self.note(INVALID, (where, "enum"), "enum must be a non-empty list")
        if "multipleOf" in node:
            step = node["multipleOf"]
            if not (_number(step) and step > 0):
                self.note(INVALID, (where, "multipleOf"), "multipleOf must be a number above 0")
        if "pattern" in node:
            self.pattern(node["pattern"], (where, "pattern"))
        for key in ("format", "$ref"):
            if key in node and not isinstance(node[key], str):
                self.note(INVALID, (where, key), f"{key} must be a string")
        self.dependencies(node, where)
        self.bounds_of(node, where)

    def dependencies(self, node: dict, where: Path | None) -> None:
        for key in ("dependencies", "dependentRequired"):
            value = node.get(key)
            if key not in node:
                continue
            if not isinstance(value, dict):
                self.note(INVALID, (where, key), f"{key} must be an object")
                continue
            for name, needs in value.items():
                if _names(needs):
                    continue
                if key == "dependentRequired":
                    self.note(INVALID, (where, key), f"{key} values must be lists of names")
                else:
                    self.push(needs, ((where, key), name))

    def bounds_of(self, node: dict, where: Path | None) -> None:
        limit = self.bounds.max_repetition
        for key in _COUNTS:
            if key in node:
                value = node[key]
                if not _count(value):
                    self.note(INVALID, (where, key), f"{key} must be a non-negative integer")
                elif value > limit:
                    self.note(BOUND, (where, key), f"{key} {show(value)} is more than {limit}")
        integer = "integer" in _types(node)
        for key in _NUMBERS:
            if key in node:
                value = node[key]
                if not _number(value):
                    self.note(INVALID, (where, key), f"{key} must be a number")
                elif integer and abs(value) > INT64:  # type: ignore[arg-type]
                    self.note(BOUND, (where, key), f"{key} {show(value)} is outside the 64-bit "
                              "integers an integer schema is compiled with")
        for low, high in _PAIRS:
            a, b = node.get(low), node.get(high)
            if _number(a) and _number(b) and a > b:  # type: ignore[operator]
                self.note(INVALID, where, f"{low} {show(a)} is above {high} {show(b)}")

    def pattern(self, value: object, where: Path | None) -> None:
        if not isinstance(value, str):
            self.note(INVALID, where, "a pattern must be a string")
            return
        if NUL in value:
            self.note(NUL_CHAR, where, "a pattern holds a NUL character")
        limit = self.bounds.max_repetition
        if (copies := repetition(value, limit)) > limit:
            self.note(REPEAT, where, f"a pattern repeats {copies} times (more than {limit})")
        shape = self.shapes.get(value)
        if shape is None and self.steps > 0:
            shape = self.shapes[value] = scan(value, self.steps)
            self.steps -= shape.steps
        if shape is None:
            return
        if shape.error is not None:
            self.note(INVALID, where, f"a pattern is not a regular expression: {shape.error}")
        elif shape.nested is not None:
            self.note(NESTED, where, f"a pattern {shape.nested}")

    def ref(self, node: dict, where: Path | None) -> None:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#") or \
                (len(ref) > 1 and ref[1] != "/"):
            return  # anchors and other documents are not judged
        target = resolve(self.root, ref[1:])
        if target is None:
            self.note(REF, (where, "$ref"), f"$ref {show(ref)} points at nothing in the schema")
        elif not isinstance(target, (dict, bool)):
            self.note(REF, (where, "$ref"), f"$ref {show(ref)} does not point at a schema")
        elif not set(node).difference(_NOT_CONTENT):
            self.refs[id(node)] = (where, target)  # a bare $ref: its chain is followed

    def ref_cycles(self) -> None:
        """A `$ref` whose chain of `$ref`s leads back to itself: a schema with no content,
        which grammar converters loop on or refuse."""
        done: set[int] = set()
        for start, (where, target) in self.refs.items():
            seen = {start}
            while isinstance(target, dict) and id(target) in self.refs \
                    and id(target) not in done:
                if id(target) in seen:
                    self.note(REF, (where, "$ref"), "a chain of $refs comes back to itself "
                              "with no schema in between")
                    return
                seen.add(id(target))
                target = self.refs[id(target)][1]
            done |= seen


def children(node: dict) -> list[object]:
    """The subschemas directly inside a schema object (its data, `enum`, `const`,
    `default`, are not schemas and are not among them)."""
    found: list[object] = [node[key] for key in _SCHEMA if key in node]
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            found.extend(node[key].values())
    for key in (*_SCHEMA_LISTS, "items"):
        value = node.get(key)
        if isinstance(value, list):
            found.extend(value)
        elif key == "items" and "items" in node:
            found.append(value)
    for key in ("dependencies", "dependentSchemas"):
        if isinstance(node.get(key), dict):
            found.extend(v for v in node[key].values() if isinstance(v, dict))
    return found


def check(schema: object, bounds: Bounds) -> dict[str, Problem]:
    """The first problem of each kind in `schema` (an object or a boolean), by kind."""
    return _Walk(schema, bounds).run()
