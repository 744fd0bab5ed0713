"""Request bodies checked against the OpenAI schema plus vLLM's extra parameters (pure: a
parsed body in, the first problem out).

What is checked: the type of every known field (an integer is an integer: not a float, not a
bool), its range where vLLM's own validation has one, the sizes of lists (messages, stop
strings, tools, logit_bias) and the JSON nesting depth of the whole body. `null` is accepted
for every optional field (vLLM treats it as absent). Unknown fields pass through by default
(vLLM adds fields every release); `unknown_fields: reject` refuses them, as OpenAI does.

Cost rule: one loop over the body's keys with one table lookup each; a field's deeper check
(messages, stop, ...) runs only when the field is present. The body was parsed once, at
admission; nothing here parses again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from warden.config.schema import ValidationSpec
from warden.errors import InvalidRequest

NONE = type(None)
INT, NUMBER, STR, BOOL = (int,), (int, float), (str,), (bool,)
LIST, DICT = (list,), (dict,)
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "a boolean",
               list: "an array", dict: "an object", NONE: "null"}


class InvalidField(InvalidRequest):
    code = "invalid_value"


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
    plain: bool = True              # nothing past the type to check (set below)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plain", self.low is None and self.high is None
                           and self.deep is None)


@dataclass(frozen=True)
class Limits:
    max_messages: int
    max_stop: int
    max_stop_length: int
    max_tools: int
    max_logit_bias: int
    max_depth: int


# -- checks of a value's contents ---------------------------------------------------------

def _strings(param: str, value: object, limit: int, item_length: int) -> InvalidField | None:
    if isinstance(value, str):
        value = [value]
    assert isinstance(value, list)
    if len(value) > limit:
        return InvalidField(f"{param}: at most {limit} items, got {len(value)}", param=param)
    for i, item in enumerate(value):
        if type(item) is not str:
            return wrong_type(f"{param}[{i}]", item, STR)
        if len(item) > item_length:
            return InvalidField(f"{param}[{i}]: longer than {item_length} characters",
                                param=f"{param}[{i}]")
    return None


def _stop(param: str, value: object, limits: Limits) -> InvalidField | None:
    return _strings(param, value, limits.max_stop, limits.max_stop_length)


def _token_ids(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    for i, item in enumerate(value):
        if type(item) is not int:
            return wrong_type(f"{param}[{i}]", item, INT)
        if item < 0:
            return out_of_range(f"{param}[{i}]", item, "a token id is >= 0")
    return None


def _prompt(param: str, value: object, limits: Limits) -> InvalidField | None:
    """A string, a list of strings, a list of token ids, or a list of lists of token ids."""
    if isinstance(value, str):
        return None
    assert isinstance(value, list)
    if not value:
        return InvalidField(f"{param}: must not be empty", param=param)
    first = value[0]
    if type(first) is int:
        return _token_ids(param, value, limits)
    for i, item in enumerate(value):
        if type(item) is list:
            problem = _token_ids(f"{param}[{i}]", item, limits)
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


def _messages(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    if not value:
        return InvalidField(f"{param}: must contain at least one message", param=param)
    if len(value) > limits.max_messages:
        return InvalidField(f"{param}: at most {limits.max_messages} messages, got "
                            f"{len(value)}", param=param)
    # The usual conversation (objects with a string role and string content) in one tight
    # loop; anything else is looked at again, with indexes, to name what is wrong.
    for message in value:
        if type(message) is not dict or type(message.get("role")) is not str \
                or type(message.get("content")) is not str:
            return _message_problem(param, value)
    return None


def _message_problem(param: str, messages: list) -> InvalidField | None:
    for i, message in enumerate(messages):
        if type(message) is not dict:
            return wrong_type(f"{param}[{i}]", message, DICT)
        role = message.get("role")
        if type(role) is not str:
            return wrong_type(f"{param}[{i}].role", role, STR)
        content = message.get("content")
        if type(content) is list:
            problem = _content_parts(f"{param}[{i}].content", content)
            if problem is not None:
                return problem
        elif type(content) is not str and content is not None:
            return wrong_type(f"{param}[{i}].content", content, (str, list))
    return None


def _tools(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, list)
    if len(value) > limits.max_tools:
        return InvalidField(f"{param}: at most {limits.max_tools} tools, got {len(value)}",
                            param=param)
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


def _logit_bias(param: str, value: object, limits: Limits) -> InvalidField | None:
    assert isinstance(value, dict)
    if len(value) > limits.max_logit_bias:
        return InvalidField(f"{param}: at most {limits.max_logit_bias} entries, got "
                            f"{len(value)}", param=param)
    for key, bias in value.items():
        if not key.isdigit():
            return InvalidField(f"{param}: key {key!r} is not a token id", param=param)
        if type(bias) not in NUMBER:
            return wrong_type(f"{param}[{key}]", bias, NUMBER)
        if not -100 <= bias <= 100:
            return out_of_range(f"{param}[{key}]", bias, "-100 to 100")
    return None


def _typed_object(field: str, types: tuple[type, ...]) -> Deep:
    """An object whose `field`, when present, has one of `types` (response_format's type)."""
    def check(param: str, value: object, limits: Limits) -> InvalidField | None:
        assert isinstance(value, dict)
        inner = value.get(field)
        if inner is not None and type(inner) not in types:
            return wrong_type(f"{param}.{field}", inner, types)
        return None
    return check


# -- the tables ---------------------------------------------------------------------------

def _opt(types: tuple[type, ...], low: float | None = None, high: float | None = None,
         deep: Deep | None = None) -> Field:
    return Field((*types, NONE), low, high, deep)


SAMPLING: dict[str, Field] = {
    # OpenAI's parameters shared by chat and completions
    "stream": _opt(BOOL),
    "stream_options": _opt(DICT, deep=_typed_object("include_usage", BOOL)),
    "n": _opt(INT, 1),
    "temperature": _opt(NUMBER, 0),
    "top_p": _opt(NUMBER, 0, 1),
    "presence_penalty": _opt(NUMBER, -2, 2),
    "frequency_penalty": _opt(NUMBER, -2, 2),
    "max_tokens": _opt(INT, 0),
    "seed": _opt(INT),
    "stop": _opt((str, list), deep=_stop),
    "logit_bias": _opt(DICT, deep=_logit_bias),
    "user": _opt(STR),
    # vLLM's extra sampling parameters
    "best_of": _opt(INT, 1),
    "top_k": _opt(INT, -1),
    "min_p": _opt(NUMBER, 0, 1),
    "repetition_penalty": _opt(NUMBER, 0),
    "length_penalty": _opt(NUMBER),
    "min_tokens": _opt(INT, 0),
    "stop_token_ids": _opt(LIST, deep=_token_ids),
    "allowed_token_ids": _opt(LIST, deep=_token_ids),
    "bad_words": _opt(LIST, deep=_stop),
    "ignore_eos": _opt(BOOL),
    "include_stop_str_in_output": _opt(BOOL),
    "skip_special_tokens": _opt(BOOL),
    "spaces_between_special_tokens": _opt(BOOL),
    "prompt_logprobs": _opt(INT, -1),
    "truncate_prompt_tokens": _opt(INT, -1),
    "structured_outputs": _opt(DICT),
    "guided_json": _opt((str, dict)),
    "guided_regex": _opt(STR),
    "guided_choice": _opt(LIST, deep=_stop),
    "guided_grammar": _opt(STR),
    "response_format": _opt(DICT, deep=_typed_object("type", STR)),
    "priority": _opt(INT),
    "request_id": _opt(STR),
    "add_special_tokens": _opt(BOOL),
}

CHAT: dict[str, Field] = {
    **SAMPLING,
    "messages": Field(LIST, deep=_messages),
    "max_completion_tokens": _opt(INT, 0),
    "logprobs": _opt(BOOL),
    "top_logprobs": _opt(INT, 0),
    "tools": _opt(LIST, deep=_tools),
    "tool_choice": _opt((str, dict)),
    "parallel_tool_calls": _opt(BOOL),
    "chat_template": _opt(STR),
    "chat_template_kwargs": _opt(DICT),
    "add_generation_prompt": _opt(BOOL),
    "continue_final_message": _opt(BOOL),
    "echo": _opt(BOOL),
    "documents": _opt(LIST),
    "mm_processor_kwargs": _opt(DICT),
}

COMPLETIONS: dict[str, Field] = {
    **SAMPLING,
    "prompt": Field((str, list), deep=_prompt),
    "logprobs": _opt(INT, 0),
    "echo": _opt(BOOL),
    "suffix": _opt(STR),
}

EMBEDDINGS: dict[str, Field] = {
    "input": Field((str, list), deep=_prompt),
    "encoding_format": _opt(STR),
    "dimensions": _opt(INT, 1),
    "user": _opt(STR),
    "truncate_prompt_tokens": _opt(INT, -1),
    "add_special_tokens": _opt(BOOL),
    "priority": _opt(INT),
    "request_id": _opt(STR),
}

# Always present, and checked by admission (model), so never "unknown".
_COMMON = {"model": _opt(STR)}

@dataclass(frozen=True, slots=True)
class Table:
    """One endpoint's fields, split by what checking them takes: a type test only (most,
    looked up first), or more."""

    required: str
    plain: dict[str, tuple[type, ...]]
    detailed: dict[str, Field]

    @classmethod
    def of(cls, required: str, fields: dict[str, Field]) -> Table:
        return cls(required, {k: f.types for k, f in fields.items() if f.plain},
                   {k: f for k, f in fields.items() if not f.plain})


TABLES: dict[str, Table] = {
    "/v1/chat/completions": Table.of("messages", {**_COMMON, **CHAT}),
    "/v1/completions": Table.of("prompt", {**_COMMON, **COMPLETIONS}),
    "/v1/embeddings": Table.of("input", {**_COMMON, **EMBEDDINGS}),
}


def _too_deep(value: object, budget: int) -> bool:
    """True when `value` nests containers more than `budget` levels deep (iterative)."""
    stack: list[tuple[object, int]] = [(value, budget)]
    while stack:
        node, left = stack.pop()
        children = node.values() if type(node) is dict else node
        for child in children:  # type: ignore[union-attr]
            if type(child) is dict or type(child) is list:
                if left == 0:
                    return True
                stack.append((child, left - 1))
    return False


class Validator:
    """Checks bodies for the endpoints that have a table; others pass (responses, tokenize:
    vLLM's own shapes, checked by vLLM)."""

    def __init__(self, spec: ValidationSpec):
        self.limits = Limits(spec.max_messages, spec.max_stop, spec.max_stop_length,
                             spec.max_tools, spec.max_logit_bias, spec.max_depth)
        self.reject_unknown = spec.unknown_fields == "reject"

    def problem(self, path: str, body: dict, raw: bytes) -> InvalidField | None:
        """The first thing wrong with `body` (parsed from `raw`) for the endpoint at `path`."""
        table = TABLES.get(path)
        if table is None:
            return None
        required = table.required
        if required not in body:
            return InvalidField(f"{required}: this field is required", param=required,
                                code="missing_required_parameter")
        plain, detailed, limits = table.plain, table.detailed, self.limits
        for key, value in body.items():
            types = plain.get(key)
            if types is not None:
                if type(value) not in types:
                    return wrong_type(key, value, types)
                continue
            field = detailed.get(key)
            if field is None:
                if self.reject_unknown:
                    return InvalidField(f"Unrecognized request argument supplied: {key}",
                                        param=key, code="unknown_parameter")
                continue
            if type(value) not in field.types:
                return wrong_type(key, value, field.types)
            if value is None:
                continue
            low, high, deep = field.low, field.high, field.deep
            if low is not None and value < low:
                return out_of_range(key, value, f">= {low:g}")
            if high is not None and value > high:
                return out_of_range(key, value, f"<= {high:g}")
            if deep is not None:
                problem = deep(key, value, limits)
                if problem is not None:
                    return problem
        # Depth cannot exceed the number of brackets: counted in C, walked only past that.
        depth = limits.max_depth
        if raw.count(b"{") + raw.count(b"[") > depth and _too_deep(body, depth - 1):
            return InvalidField(f"the body nests deeper than {depth} levels", param=None,
                                code="too_deep")
        return None
