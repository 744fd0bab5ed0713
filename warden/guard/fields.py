"""The fields of OpenAI request bodies plus vLLM's extra parameters: each one's types, range
and, where it has contents worth checking (messages, stop strings, tools, logit_bias, token-id
prompts), the check of them. Pure data and pure functions; `validate` applies them."""


from __future__ import annotations

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
        return _too_many(param, value, limits.max_messages, "messages")
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


def _logit_bias(param: str, value: object, limits: Limits) -> InvalidField | None:
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
COMMON: dict[str, Field] = {"model": _opt(STR)}
