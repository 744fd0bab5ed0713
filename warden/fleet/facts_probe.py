"""How a model's facts are learned from a vLLM API server, without its engine: every request
here is answered by the API server's own tokenizer (vLLM 0.6 to 0.34 alike, read in its
sources; run against real 0.11, 0.24 and 0.32: their engines counted no request), none
generates, none is passed to the engine.

What vLLM exposes, by version (read in its sources):
- `GET /v1/models`: each card's `max_model_len` (0.6+; read by discovery). Nothing else of
  the model: not its vocabulary, modalities or structured-output backend.
- `POST /tokenize` `{"model", "prompt", "add_special_tokens"}`: `count`, `max_model_len`,
  `tokens`; `token_strs` too from 0.9.1 when asked (`return_token_strs`).
- `POST /detokenize` `{"model", "tokens"}`: `{"prompt": text}`. Ids are not checked against
  the vocabulary: a Hugging Face fast tokenizer drops an id it does not have (an empty
  text), a slow one or Mistral's raises (a 500, or a 400).
- `GET /tokenizer_info` (0.10+, only with `--enable-tokenizer-info-endpoint`): the
  tokenizer's config, with `added_tokens_decoder` (id -> text of every added token).
- `GET /metrics`: `vllm:cache_config_info` describes the KV cache, not the model; no other
  gauge names a model fact. (`/server_info`, which has the whole config, exists only in
  development mode, which vLLM warns must not run in production: not used.)

So, per model (LoRA adapters excepted: their tokenizer may add tokens):
- the context length: its card's `max_model_len`, else `/tokenize`'s;
- the vocabulary size: found by bisection on `/detokenize` (15 to 30 requests, a size up
  to `MAX_VOCAB`): an id is in the vocabulary when `[id, id]` decodes to some text. A fast
  tokenizer drops unknown ids, a slow one raises: both read as outside. It starts from ids
  `/tokenize` gave (surely inside), and the answer is checked: the 256 ids from it on must
  all be outside, or nothing is learned (an id inside that decodes to nothing, or a gap in
  the ids, would otherwise give too small a size). Limits: this is the tokenizer's size.
  vLLM checks `allowed_token_ids` against it; a model's output layer can be wider (padding
  rows no text maps to: Qwen2.5 has 151665 tokens and 152064 logits), and an id in between,
  which no tokenizer of the model produces, is refused here though vLLM would take it; or
  narrower, for some multimodal models, where the rules then catch less. Set
  `guard.models.<model>.vocab_size` where that matters.
- special tokens: the marker-like added tokens of `/tokenizer_info` when it is enabled;
  else `CANDIDATES` (chat-template markers and media placeholders of common model families)
  tokenized with `add_special_tokens: false`: one whose text comes back as one token is one
  the tokenizer turns into a control token. Limits: only those candidates are found, and a
  sentencepiece vocabulary could hold one as an ordinary piece.
- modalities and the structured-output backend: no endpoint says them; configure them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import orjson

# (method, path, JSON body or b"") -> (status, body)
Call = Callable[[str, str, bytes], Awaitable[tuple[int, bytes]]]

MAX_VOCAB = 1 << 24      # no tokenizer is larger (the largest are about 2**18)
CHECKED_PAST_END = 256   # ids past the found size that must all be outside
MAX_SPECIAL_TOKENS = 1024
SAMPLE = "The quick brown fox jumps over the lazy dog, 0123456789."

CANDIDATES = (
    # ChatML (Qwen and many others), Llama 3, Llama 2 and Mistral, Gemma, Phi-3, gpt-oss,
    # reasoning and tool-call markers, DeepSeek
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CALLS]",
    "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<|user|>", "<|assistant|>",
    "<|system|>", "<|end|>", "<|start|>", "<|message|>", "<|channel|>", "<|return|>",
    "<|call|>", "<|constrain|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    # (DeepSeek's are spelt with fullwidth bars)
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",  # noqa: RUF001
    # media placeholders
    "<image>", "<video>", "<audio>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
    "<|vision_end|>", "<|image|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>", "[IMG]", "[IMG_BREAK]",
    "[IMG_END]", "<img>", "</img>", "<IMG_CONTEXT>", "<|image_start|>", "<|image_end|>",
)
# An added token that reads as a marker: bracketed, no spaces (not "\n\n" or "  " runs).
_MARKER = re.compile(r"^[<\[][^\s]{1,62}[>\]]$")
_FILLER = re.compile(r"reserved|unused", re.IGNORECASE)  # placeholders no template writes


class ProbeFailed(Exception):
    """A fact could not be learned: `reason` says why (once, in the log and the admin API)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class ModelProbe:
    """What was learned of one model (None: not learned) and why the rest was not."""

    vocab_size: int | None = None
    max_model_len: int | None = None
    special_tokens: tuple[str, ...] | None = None
    source: dict[str, str] = field(default_factory=dict)   # fact -> endpoint
    problems: dict[str, str] = field(default_factory=dict)  # fact -> why unknown


async def _json(call: Call, method: str, path: str, body: dict | None = None) -> object:
    """The answer's JSON; ProbeFailed for any status but 200 or for a body that is not."""
    status, answer = await call(method, path, orjson.dumps(body) if body is not None else b"")
    if status != 200:
        raise ProbeFailed(f"{method} {path} answered {status}")
    try:
        return orjson.loads(answer)
    except orjson.JSONDecodeError:
        raise ProbeFailed(f"{method} {path} answered something that is not JSON") from None


async def tokenize(call: Call, model: str, text: str, strings: bool = False) -> dict:
    body: dict = {"model": model, "prompt": text, "add_special_tokens": False}
    if strings:
        body["return_token_strs"] = True
    answer = await _json(call, "POST", "/tokenize", body)
    if not isinstance(answer, dict) or not _ids(answer.get("tokens")):
        raise ProbeFailed("POST /tokenize answered no token list")
    return answer


def _ids(value: object) -> bool:
    """Token ids, at least one (the vocabulary's search starts from the largest)."""
    return isinstance(value, list) and bool(value) \
        and all(type(t) is int and t >= 0 for t in value)


async def tokenizer_info_tokens(call: Call) -> tuple[str, ...] | None:
    """The marker-like added tokens /tokenizer_info lists; None when it is not served."""
    try:
        info = await _json(call, "GET", "/tokenizer_info")
    except ProbeFailed:
        return None  # (off by default: its absence is not a problem)
    added = info.get("added_tokens_decoder") if isinstance(info, dict) else None
    if not isinstance(added, dict):
        return None
    markers = sorted({text for text in added.values() if isinstance(text, str)
                      and _MARKER.match(text) and not _FILLER.search(text)})
    return tuple(markers[:MAX_SPECIAL_TOKENS])


async def special_tokens(call: Call, model: str) -> tuple[str, ...]:
    """Which `CANDIDATES` this tokenizer reads as one token: in one request where /tokenize
    gives token strings (0.9.1+), else one request per candidate."""
    answer = await tokenize(call, model, "\n".join(CANDIDATES), strings=True)
    strings = answer.get("token_strs")
    if isinstance(strings, list):
        return tuple(c for c in CANDIDATES if c in set(strings))
    found = []
    for candidate in CANDIDATES:
        if len((await tokenize(call, model, candidate))["tokens"]) == 1:
            found.append(candidate)
    return tuple(found)


async def _inside(call: Call, model: str, ids: list[int]) -> bool:
    """Whether /detokenize reads some of `ids` as tokens (some text comes back). A 400 or
    500 is an id the tokenizer refused; any other failure ends the probe."""
    status, answer = await call("POST", "/detokenize",
                                orjson.dumps({"model": model, "tokens": ids}))
    if status in (400, 500):
        return False
    if status != 200:
        raise ProbeFailed(f"POST /detokenize answered {status}")
    try:
        text = orjson.loads(answer).get("prompt")
    except (orjson.JSONDecodeError, AttributeError):
        raise ProbeFailed("POST /detokenize answered something that is not JSON") from None
    if not isinstance(text, str):
        raise ProbeFailed("POST /detokenize answered no prompt text")
    return text != ""


async def vocab_size(call: Call, model: str, known: int) -> int:
    """The tokenizer's size (see the module's docstring), from `known`, an id inside."""
    if not await _inside(call, model, [known, known]):
        raise ProbeFailed("POST /detokenize does not decode a known token id")
    low, high = known, max(2 * known, 1024)
    while await _inside(call, model, [high, high]):  # an id outside, by doubling
        low, high = high, 2 * high
        if high > MAX_VOCAB:
            raise ProbeFailed(f"POST /detokenize decodes every id up to {MAX_VOCAB}")
    while high - low > 1:  # low is inside, high outside
        middle = (low + high) // 2
        if await _inside(call, model, [middle, middle]):
            low = middle
        else:
            high = middle
    if await _inside(call, model, list(range(high, high + CHECKED_PAST_END))):
        raise ProbeFailed(f"POST /detokenize decodes ids past {high}: the ids have gaps")
    return high


async def probe_model(call: Call, model: str, card_length: int | None,
                      info_tokens: tuple[str, ...] | None) -> ModelProbe:
    """Every fact that can be learned of `model`; each failure is noted, not raised."""
    probe = ModelProbe()
    try:
        sample = await tokenize(call, model, SAMPLE)
    except ProbeFailed as e:
        probe.problems.update(vocab_size=e.reason, special_tokens=e.reason)
        if card_length is None:
            probe.problems["max_model_len"] = e.reason
        return probe
    length = sample.get("max_model_len")
    if card_length is None and type(length) is int and length > 0:
        probe.max_model_len, probe.source["max_model_len"] = length, "POST /tokenize"
    try:
        if info_tokens is not None:
            probe.special_tokens = info_tokens
            probe.source["special_tokens"] = "GET /tokenizer_info"
        else:
            probe.special_tokens = await special_tokens(call, model)
            probe.source["special_tokens"] = "POST /tokenize"
    except ProbeFailed as e:
        probe.problems["special_tokens"] = e.reason
    try:
        probe.vocab_size = await vocab_size(call, model, max(sample["tokens"]))
        probe.source["vocab_size"] = "POST /detokenize"
    except ProbeFailed as e:
        probe.problems["vocab_size"] = e.reason
    return probe
