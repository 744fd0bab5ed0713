"""A deterministic stand-in tokenizer: words, numbers and single punctuation marks, each mapped
to a stable id, so equal texts give equal token ids (and share prefix-cache blocks).

Like a Hugging Face fast tokenizer it has a size (ids 0..vocab_size-1) and special tokens
(the last ids): the text of one, written in a prompt, becomes that one token, and decoding
drops an id it does not have instead of failing."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import cached_property

_TOKEN = re.compile(r"\w+|[^\w\s]")
VOCAB_SIZE = 32000
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>")

# Output vocabulary: short pieces that read like sub-word tokens.
VOCAB = ("the", " model", " token", " engine", " cache", " stream", " fleet", " request",
         " queue", " batch", ",", ".", " and", " of", " to", " in", " a", " is", " for", " on",
         " vLLM", " warden", " block", " prefix", " step", " load", " route", " node")


@dataclass(frozen=True)
class Tokenizer:
    vocab_size: int = VOCAB_SIZE
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS

    def __post_init__(self) -> None:
        if self.vocab_size <= len(self.special_tokens):
            raise ValueError(f"a vocabulary of {self.vocab_size} cannot hold "
                             f"{len(self.special_tokens)} special tokens and any other")

    @cached_property
    def _pieces(self) -> re.Pattern[str]:
        """Special tokens first (the longest first), then ordinary pieces."""
        alternatives = sorted(map(re.escape, self.special_tokens), key=len, reverse=True)
        return re.compile("|".join([*alternatives, _TOKEN.pattern]))

    @property
    def ordinary(self) -> int:
        """How many ids ordinary pieces take (the special tokens take the rest)."""
        return self.vocab_size - len(self.special_tokens)

    def special_id(self, text: str) -> int:
        return self.ordinary + self.special_tokens.index(text)

    def pieces(self, text: str) -> list[str]:
        return self._pieces.findall(text)

    def piece_id(self, piece: str) -> int:
        if piece in self.special_tokens:
            return self.special_id(piece)
        return zlib.crc32(piece.encode()) % self.ordinary

    def encode(self, text: str) -> list[int]:
        return [self.piece_id(piece) for piece in self.pieces(text)]

    def encode_chat(self, messages: list) -> list[int]:
        """Token ids of a chat, with a marker per role, as a chat template would add."""
        ids: list[int] = []
        for message in messages:
            if isinstance(message, dict):
                ids.append(self.piece_id(str(message.get("role", ""))))
                ids += self.encode(_content_text(message.get("content", "")))
            else:
                ids += self.encode(str(message))
        return ids

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`; one outside the vocabulary is dropped (as a fast tokenizer
        does)."""
        return " ".join(self.token_string(t) for t in ids if 0 <= t < self.vocab_size)

    def token_string(self, token_id: int) -> str:
        if token_id >= self.ordinary:
            return self.special_tokens[token_id - self.ordinary]
        return f"t{token_id}"


DEFAULT = Tokenizer()


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
