"""A deterministic stand-in tokenizer: words, numbers and single punctuation marks."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\w+|[^\w\s]")

# Output vocabulary: short pieces that read like sub-word tokens.
VOCAB = ("the", " model", " token", " engine", " cache", " stream", " fleet", " request",
         " queue", " batch", ",", ".", " and", " of", " to", " in", " a", " is", " for", " on",
         " vLLM", " warden", " block", " prefix", " step", " load", " route", " node")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def output_token(seed: int, index: int) -> str:
    """The `index`-th output token of a request whose generation seed is `seed`."""
    return VOCAB[(seed * 2654435761 + index * 40503) % len(VOCAB)]
