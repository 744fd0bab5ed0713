"""What a simulated node reads from a request: prompt token ids, limits, generation seed;
and vLLM's 4xx answers when a request is refused."""

from __future__ import annotations

import hashlib

import orjson

from warden.sim import vllm_format as fmt
from warden.sim.tokenizer import encode, encode_chat


class BadRequest(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None):
        super().__init__(message)
        self.body = fmt.error(message, type_, status, param)
        self.status = status


def checked_max_tokens(body: dict, prompt_tokens: int, limit: int) -> int:
    """The request's output limit, refused with vLLM's own messages when it cannot run."""
    if prompt_tokens > limit:
        raise BadRequest(400, f"This model's maximum context length is {limit} tokens. "
                         f"However, your prompt contains at least {prompt_tokens} input "
                         "tokens, which exceeds this limit even without any output tokens. "
                         "Please reduce the length of the input prompt. "
                         f"(parameter=input_tokens, value={prompt_tokens})",
                         "BadRequestError", "input_tokens")
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") \
        or body.get("max_output_tokens") or (limit - prompt_tokens)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(400, f"max_tokens must be at least 1, got {max_tokens}.",
                         "BadRequestError", "max_tokens")
    if max_tokens > limit:
        raise BadRequest(400, f"max_tokens={max_tokens} cannot be greater than "
                         f"max_model_len={limit}. Please request fewer output tokens. "
                         f"(parameter=max_tokens, value={max_tokens})",
                         "BadRequestError", "max_tokens")
    return max_tokens


def prompt_ids_of(body: dict, chat: bool) -> list[int]:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "messages must be a non-empty list", "BadRequestError",
                             "messages")
        return encode_chat(messages)
    prompt = body.get("prompt", body.get("input", ""))
    if isinstance(prompt, list):  # token ids, or a batch of prompts (simulated as one)
        if all(isinstance(t, int) for t in prompt):
            return list(prompt) or [0]
        return [t for p in prompt for t in (p if isinstance(p, list) else encode(str(p)))] \
            or [0]
    return encode(str(prompt)) or [0]


def seed_of(body: dict) -> int:
    """Output depends on the model and the prompt only (as greedy decoding would)."""
    prompt = [body["model"], body.get("messages"), body.get("prompt"), body.get("input")]
    digest = hashlib.blake2b(orjson.dumps(prompt, default=str), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def embed(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=dims).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest]
