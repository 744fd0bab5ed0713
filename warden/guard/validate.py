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

from dataclasses import dataclass
from typing import Final, cast

from warden.config.schema import ValidationSpec
from warden.errors import InvalidField
from warden.guard.field_tables import CHAT, COMMON, COMPLETIONS, EMBEDDINGS
from warden.guard.fields import Field, Limits, out_of_range, wrong_type


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
TABLES: dict[str, Table] = {
    "/v1/chat/completions": Table.of("messages", {**COMMON, **CHAT}),
    COMPLETIONS_PATH: Table.of("prompt", {**COMMON, **COMPLETIONS}),
    "/v1/embeddings": Table.of("input", {**COMMON, **EMBEDDINGS}),
}


def _too_deep(value: object, budget: int) -> bool:
    """True when `value` nests containers more than `budget` levels deep (iterative)."""
    stack: list[tuple[object, int]] = [(value, budget)]
    while stack:
        node, left = stack.pop()
        # (only dicts and lists are pushed: see below)
        children = node.values() if type(node) is dict else cast("list[object]", node)
        for child in children:
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
        # Depth cannot exceed the number of brackets: counted in C, walked only past that.
        depth = limits.max_depth
        if raw.count(b"{") + raw.count(b"[") > depth and _too_deep(body, depth - 1):
            return InvalidField(f"the body nests deeper than {depth} levels", param=None,
                                code="too_deep")
        return None
