"""A deterministic stand-in tokenizer: words, numbers and single punctuation marks, each mapped
to a stable id, so equal texts give equal token ids (and share prefix-cache blocks)."""

from __future__ import annotations

import re
import zlib

_TOKEN = re.compile(r"\w+|[^\w\s]")
VOCAB_SIZE = 32000

# Output vocabulary: short pieces that read like sub-word tokens.
VOCAB = ("the", " model", " token", " engine", " cache", " stream", " fleet", " request",
         " queue", " batch", ",", ".", " and", " of", " to", " in", " a", " is", " for", " on",
         " vLLM", " warden", " block", " prefix", " step", " load", " route", " node")


def encode(text: str) -> list[int]:
    return [zlib.crc32(piece.encode()) % VOCAB_SIZE for piece in _TOKEN.findall(text)]


def encode_chat(messages: list) -> list[int]:
    """Token ids of a chat, with a marker per role, as a chat template would add."""
    ids: list[int] = []
    for message in messages:
        if isinstance(message, dict):
            ids.append(zlib.crc32(str(message.get("role", "")).encode()) % VOCAB_SIZE)
            ids += encode(_content_text(message.get("content", "")))
        else:
            ids += encode(str(message))
    return ids


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def output_token_id(seed: int, index: int) -> int:
    """The id of the `index`-th output token of a request whose generation seed is `seed`."""
    return (seed * 2654435761 + index * 40503) % len(VOCAB)


def token_text(token_id: int) -> str:
    return VOCAB[token_id % len(VOCAB)]


def _content_text(content: object) -> str:
    if isinstance(content, list):  # multimodal parts: the text parts count
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)
