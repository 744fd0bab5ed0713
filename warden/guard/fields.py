"""What a field of a request body is (its types, range and content check) and the checks of
contents worth checking (messages, stop strings, tools, logit_bias, token-id prompts,
structured outputs). Which endpoint takes which field is field_tables'. Pure data and pure
functions; `validate` applies them."""


from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from warden.errors import InvalidField

NONE = type(None)
INT, NUMBER, STR, BOOL = (int,), (int, float), (str,), (bool,)
LIST, DICT = (list,), (dict,)
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
               list: "an array", dict: "an object", NONE: "null"}


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _expected(types: tuple[type, ...]) -> str:
    types = tuple(t for t in types if t is not NONE)
    if types == NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES[t] for t in types)


def wrong_type(param: str, value: object, types: tuple[type, ...]) -> InvalidField:
    return InvalidField(f"{param}: expected {_expected(types)}, got {_kind(value)}",
                        param=param, code="invalid_type")


def out_of_range(param: str, value: object, rule: str) -> InvalidField:
    return InvalidField(f"{param}: {value!r} is out of range ({rule})", param=param)


Deep = Callable[[str, object, "Limits"], "InvalidField | None"]


@dataclass(frozen=True, slots=True)
class Field:
    types: tuple[type, ...]
    low: float | None = None        # inclusive bounds for numbers
    high: float | None = None
    deep: Deep | None = None        # a check of the value's contents, run after the type's

    @property
    def plain(self) -> bool:
        """Nothing past the type to check."""
        return self.low is None and self.high is None and self.deep is None


@dataclass(frozen=True)
class Limits:
    max_messages: int
    max_content_parts: int
    max_stop: int
    max_stop_length: int
    max_tools: int
    max_logit_bias: int
    max_depth: int


# -- checks of a value's contents ---------------------------------------------------------

def _too_many(param: str, items: list | dict, limit: int, noun: str) -> InvalidField | None:
    if len(items) > limit:
        return InvalidField(f"{param}: at most {limit} {noun}, got {len(items)}", param=param)
    return None


def _strings(param: str, value: object, limit: int, item_length: int) -> InvalidField | None:
    if isinstance(value, str):
        value = [value]
    assert isinstance(value, list)
    problem = _too_many(param, value, limit, "items")
    if problem is not None:
        return problem
    for i, item in enumerate(value):
        if type(item) is not str:
            return wrong_type(f"{param}[{i}]", item, STR)
        if len(item) > item_length:
            return InvalidField(f"{param}[{i}]: longer than {item_length} characters",
                                param=f"{param}[{i}]")
    return None


def stop_strings(param: str, value: object, limits: Limits) -> InvalidField | None:
    return _strings(param, value, limits.max_stop, limits.max_stop_length)


# A prefix-cache salt as any cache key takes it: a loose one killed EngineCore on LMCache
# deployments (CVE-2026-105756: a character or length its key rejects, uncaught).
_SALT = re.compile(r"[A-Za-z0-9._:=+/-]{1,256}")


def cache_salt(param: str, value: object, limits: Limits) -> InvalidField | None:
    if isinstance(value, str) and _SALT.fullmatch(value) is None:
        return InvalidField(f"{param}: 1 to 256 characters of A-Z a-z 0-9 . _ : = + / -",
                            param=param)
    return None


def token_ids(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    for i, item in enumerate(value):
        if type(item) is not int:
            return wrong_type(f"{param}[{i}]", item, INT)
        if item < 0:
            return out_of_range(f"{param}[{i}]", item, "a token id is >= 0")
    return None


def prompt(param: str, value: object, limits: Limits) -> InvalidField | None:
    """A string, a list of strings, a list of token ids, or a list of lists of token ids."""
    if isinstance(value, str):
        return None
    assert isinstance(value, list)
    if not value:
        return InvalidField(f"{param}: must not be empty", param=param)
    first = value[0]
    if type(first) is int:
        return token_ids(param, value, limits)
    for i, item in enumerate(value):
        if type(item) is list:
            problem = token_ids(f"{param}[{i}]", item, limits)
            if problem is not None:
                return problem
        elif type(item) is not str:
            return wrong_type(f"{param}[{i}]", item, (str, list))
    return None


def _content_parts(param: str, parts: list) -> InvalidField | None:
    for i, part in enumerate(parts):
        if type(part) is not dict:
            return wrong_type(f"{param}[{i}]", part, DICT)
        if type(part.get("type")) is not str:
            return wrong_type(f"{param}[{i}].type", part.get("type"), STR)
    return None


def messages(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    if not value:
        return InvalidField(f"{param}: must contain at least one message", param=param)
    if len(value) > limits.max_messages:
        return _too_many(param, value, limits.max_messages, "messages")
    # The usual conversation (objects with a string role and string content) in one tight
    # loop; anything else is looked at again, with indexes, to name what is wrong.
    for message in value:
        if type(message) is not dict or type(message.get("role")) is not str \
                or type(message.get("content")) is not str:
            return _message_problem(param, value, limits)
    return None


def _message_problem(param: str, messages: list, limits: Limits) -> InvalidField | None:
    parts = 0
    for i, message in enumerate(messages):
        if type(message) is not dict:
            return wrong_type(f"{param}[{i}]", message, DICT)
        role = message.get("role")
        if type(role) is not str:
            return wrong_type(f"{param}[{i}].role", role, STR)
        content = message.get("content")
        if type(content) is list:
            parts += len(content)
            if parts > limits.max_content_parts:
                return _too_many_parts(param, f"{param}[{i}].content", limits)
            problem = _content_parts(f"{param}[{i}].content", content)
            if problem is not None:
                return problem
        elif type(content) is not str and content is not None:
            return wrong_type(f"{param}[{i}].content", content, (str, list))
    return None


def response_items(body: dict, limits: Limits) -> InvalidField | None:
    """The Responses API's `input` items, counted as chat's messages and their content parts
    are (the rest of its shapes are vLLM's to check): what the media rules walk is bounded on
    every endpoint that carries media."""
    items = body.get("input")
    if type(items) is not list:
        return None
    if len(items) > limits.max_messages:
        return _too_many("input", items, limits.max_messages, "input items")
    parts = 0
    for i, item in enumerate(items):
        content = item.get("content") if type(item) is dict else None
        if type(content) is list:
            parts += len(content)
            if parts > limits.max_content_parts:
                return _too_many_parts("input", f"input[{i}].content", limits)
    return None


def _too_many_parts(carrier: str, where: str, limits: Limits) -> InvalidField:
    """More content parts in all of `carrier`'s items than the bound (`where` the item that
    went over it)."""
    return InvalidField(f"{carrier}: more than {limits.max_content_parts} content parts in all",
                        param=where, code="too_many_content_parts")


def tools(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    problem = _too_many(param, value, limits.max_tools, "tools")
    if problem is not None:
        return problem
    for i, tool in enumerate(value):
        if type(tool) is not dict:
            return wrong_type(f"{param}[{i}]", tool, DICT)
        function = tool.get("function")
        if function is not None:
            if type(function) is not dict:
                return wrong_type(f"{param}[{i}].function", function, DICT)
            if type(function.get("name")) is not str:
                return wrong_type(f"{param}[{i}].function.name", function.get("name"), STR)
    return None


def logit_bias(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, dict)
    problem = _too_many(param, value, limits.max_logit_bias, "entries")
    if problem is not None:
        return problem
    for key, bias in value.items():
        if not key.isdigit():
            return InvalidField(f"{param}: key {key!r} is not a token id", param=param)
        if type(bias) not in NUMBER:
            return wrong_type(f"{param}[{key}]", bias, NUMBER)
        if not -100 <= bias <= 100:
            return out_of_range(f"{param}[{key}]", bias, "-100 to 100")
    return None


# vLLM's StructuredOutputsParams (sampling_params.py; the same fields from 0.11 to 0.32, plus
# 0.11's disable_fallback). Strict like every type here: vLLM would read `"json_object": 0`
# as false (and 0.11's engine dies of a false one), so a number is refused, not guessed at.
STRUCTURED_OUTPUTS: dict[str, tuple[type, ...]] = {
    "json": (str, dict, NONE), "regex": (str, NONE), "choice": (list, NONE),
    "grammar": (str, NONE), "json_object": (bool, NONE), "structural_tag": (str, NONE),
    "whitespace_pattern": (str, NONE), "disable_any_whitespace": (bool, NONE),
    "disable_additional_properties": (bool, NONE), "disable_fallback": (bool, NONE),
}


def structured_outputs(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, dict)
    for key, inner in value.items():
        types = STRUCTURED_OUTPUTS.get(key)
        if types is not None and type(inner) not in types:
            return wrong_type(f"{param}.{key}", inner, types)
    choice = value.get("choice")
    if type(choice) is list:
        for i, item in enumerate(choice):
            if type(item) is not str:
                return wrong_type(f"{param}.choice[{i}]", item, STR)
    return None


def typed_object(field: str, types: tuple[type, ...]) -> Deep:
    """An object whose `field`, when present, has one of `types` (response_format's type)."""
    def check(param: str, value: object, limits: Limits) -> InvalidField | None:
        assert isinstance(value, dict)
        inner = value.get(field)
        if inner is not None and type(inner) not in types:
            return wrong_type(f"{param}.{field}", inner, types)
        return None
    return check
