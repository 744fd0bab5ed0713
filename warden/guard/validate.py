"""Request bodies checked against the OpenAI schema plus vLLM's extra parameters (pure: a
parsed body in, the first problem out).

What is checked: the type of every known field (an integer is an integer: not a float, not a
bool), its range where vLLM's own validation has one, the sizes of lists (messages and their
content parts, stop strings, tools, logit_bias) and the JSON nesting depth of the whole body;
of the Responses API's bodies, only the count of `input` items and their content parts.
`null` is accepted for every optional field (vLLM treats it as absent). Unknown fields pass
through by default (vLLM adds fields every release); `unknown_fields: reject` refuses them, as
OpenAI does.

Cost rule: one loop over the body's keys with one table lookup each; a field's deeper check
(messages, stop, ...) runs only when the field is present. The body was parsed once, at
admission; nothing here parses again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from warden.config.schema import ValidationSpec
from warden.errors import InvalidField
from warden.guard.field_tables import CHAT, COMMON, COMPLETIONS, EMBEDDINGS
from warden.guard.fields import Field, Limits, out_of_range, response_items, wrong_type


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


COMPLETIONS_PATH: Final = "/v1/completions"
RESPONSES_PATH: Final = "/v1/responses"
TABLES: dict[str, Table] = {
    "/v1/chat/completions": Table.of("messages", {**COMMON, **CHAT}),
    COMPLETIONS_PATH: Table.of("prompt", {**COMMON, **COMPLETIONS}),
    "/v1/embeddings": Table.of("input", {**COMMON, **EMBEDDINGS}),
}


def _too_deep(value: object, budget: int) -> bool:
    """True when `value` (a dict or a list) nests containers more than `budget` levels deep.
    Recursive, each kind of container in a function of its own: compiled, the loops over a
    dict's values and a list's items are then native (the depth is bounded by
    `max_depth`, at most 512: far from the recursion limit)."""
    if type(value) is dict:
        return _dict_too_deep(value, budget)
    return _list_too_deep(cast("list[object]", value), budget)


def _dict_too_deep(node: dict, budget: int) -> bool:
    for child in node.values():
        if type(child) is dict:
            if budget == 0 or _dict_too_deep(child, budget - 1):
                return True
        elif type(child) is list and (budget == 0 or _list_too_deep(child, budget - 1)):
            return True
    return False


def _list_too_deep(node: list[object], budget: int) -> bool:
    for child in node:
        if type(child) is dict:
            if budget == 0 or _dict_too_deep(child, budget - 1):
                return True
        elif type(child) is list and (budget == 0 or _list_too_deep(child, budget - 1)):
            return True
    return False


class Validator:
    """Checks bodies for the endpoints that have a table; others pass (responses, tokenize:
    vLLM's own shapes, checked by vLLM)."""

    def __init__(self, spec: ValidationSpec):
        self.limits = Limits(spec.max_messages, spec.max_content_parts, spec.max_stop,
                             spec.max_stop_length, spec.max_tools, spec.max_logit_bias,
                             spec.max_depth)
        self.reject_unknown = spec.unknown_fields == "reject"

    def problem(self, path: str, body: dict) -> InvalidField | None:
        """The first thing wrong with `body` (parsed) for the endpoint at `path`."""
        table = TABLES.get(path)
        if table is None:
            return response_items(body, self.limits) if path == RESPONSES_PATH else None
        required = table.required
        if required not in body and not (path == COMPLETIONS_PATH and "prompt_embeds" in body):
            # (a completion's prompt may be given as embeddings instead: vLLM's
            # --enable-prompt-embeds; whether to accept them is the pe-untrusted rule's)
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
        if path == COMPLETIONS_PATH and body.get("max_tokens") == 0 \
                and body.get("echo") is not True:  # (0 is echo-only scoring: vLLM's rule)
            return out_of_range("max_tokens", 0, ">= 1; 0 only with echo")
        # Walked, not first bounded by counting the raw body's brackets: on CPython 3.11 a
        # one-byte `count` is a plain loop (~5 instructions a byte: ~95k on a 10 KB prompt),
        # where the walk costs per container (a chat body has a handful) and stops at the
        # first too deep.
        depth = limits.max_depth
        if _too_deep(body, depth - 1):
            return InvalidField(f"the body nests deeper than {depth} levels", param=None,
                                code="too_deep")
        return None
