"""What is unusual in a request body, for ranking the suspects of an engine's death (pure: a
parsed body in, reasons out).

The rules come from requests measured to kill real vLLM engines (docs/real-vllm.md and
vLLM's issue tracker): structured-output parameters present but carrying no usable constraint
(0.11 died on eleven such shapes, 0.24 on two), a regex that does not compile, a JSON schema
response format without a schema, `response_format: {"type": "text"}`; and, more weakly,
parameters that take rarely used engine paths. Each reason has a weight: a known killer
outweighs everything else.
"""

from __future__ import annotations

import re

KNOWN_KILLER = 10
RARE_PATH = 2

_CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
# Parameters an OpenAI request rarely carries, each a less travelled path in the engine.
_RARE = {
    "logprobs": "logprobs requested", "top_logprobs": "top_logprobs requested",
    "prompt_logprobs": "prompt_logprobs requested", "logit_bias": "logit_bias given",
    "guided_json": "guided_json (old structured outputs)", "guided_regex": "guided_regex",
    "guided_grammar": "guided_grammar", "guided_choice": "guided_choice",
    "bad_words": "bad_words given", "allowed_token_ids": "allowed_token_ids given",
    "min_tokens": "min_tokens given", "truncate_prompt_tokens": "truncate_prompt_tokens",
}


def unusual(body: object) -> list[tuple[int, str]]:
    """(weight, reason) for each unusual thing in a request body, heaviest first."""
    if not isinstance(body, dict):
        return [(RARE_PATH, "the body is not a JSON object")]
    found: list[tuple[int, str]] = []
    outputs = body.get("structured_outputs")
    if "structured_outputs" in body:
        if not isinstance(outputs, dict):
            found.append((KNOWN_KILLER, "structured_outputs is not an object"))
        elif not any(_usable(field, outputs.get(field)) for field in _CONSTRAINTS):
            found.append((KNOWN_KILLER, "structured_outputs with no usable constraint "
                                        f"({_show(outputs)})"))
        elif isinstance(outputs.get("regex"), str) and not _compiles(outputs["regex"]):
            found.append((KNOWN_KILLER, "structured_outputs regex does not compile"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "text":
            found.append((KNOWN_KILLER, 'response_format {"type": "text"}'))
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or spec.get("schema") is None:
                found.append((KNOWN_KILLER, "response_format json_schema without a schema"))
    for key, reason in _RARE.items():
        if body.get(key) not in (None, False, 0, [], {}):
            found.append((RARE_PATH, reason))
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        found.append((RARE_PATH, f"n={n}"))
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 32768:
        found.append((RARE_PATH, f"max_tokens={max_tokens}"))
    found.sort(key=lambda item: -item[0])
    return found


def _usable(field: str, value: object) -> bool:
    if field == "json_object":
        return value is True
    if field == "regex":
        return isinstance(value, str) and bool(value) and _compiles(value)
    return bool(value)


def _compiles(regex: str) -> bool:
    try:
        re.compile(regex)
    except re.error:
        return False
    return True


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"
