"""What a simulated node reads from a request: prompt token ids, limits, generation seed;
and vLLM's 4xx answers when a request is refused."""

from __future__ import annotations

import hashlib
import math
import re

import orjson

from warden.sim import vllm_format as fmt
from warden.sim.tokenizer import encode, encode_chat


class BadRequest(Exception):
    def __init__(self, status: int, message: str, type_: str, param: str | None = None):
        super().__init__(message)
        self.body = fmt.error(message, type_, status, param)
        self.status = status


def check_sampling(body: dict) -> None:
    """vLLM's SamplingParams checks (vllm/sampling_params.py `_verify_args`), with its
    messages; those vLLM ties to a parameter name it in `param` and in the message."""
    def number(name: str, default: float) -> float:
        value = body.get(name)
        return default if value is None or isinstance(value, bool) else value

    n = number("n", 1)
    if isinstance(n, int) and n < 1:
        _refuse(f"n must be at least 1, got {n}.")
    for name in ("presence_penalty", "frequency_penalty"):
        value = number(name, 0.0)
        if isinstance(value, int | float) and not -2.0 <= value <= 2.0:
            _refuse(f"{name} must be in [-2, 2], got {value}.")
    temperature = number("temperature", 1.0)
    if isinstance(temperature, int | float):
        if not math.isfinite(temperature):
            _refuse(f"temperature must be a finite number, got {temperature}.", "temperature",
                    temperature)
        if temperature < 0.0:
            _refuse(f"temperature must be non-negative, got {temperature}.", "temperature",
                    temperature)
        if temperature > 2.0:
            _refuse(f"temperature must be in [0, 2], got {temperature}.", "temperature",
                    temperature)
    top_p = number("top_p", 1.0)
    if isinstance(top_p, int | float) and not 0.0 < top_p <= 1.0:
        _refuse(f"top_p must be in (0, 1], got {top_p}.", "top_p", top_p)
    top_k = number("top_k", 0)
    if isinstance(top_k, int) and top_k < -1:
        _refuse(f"top_k must be 0 (disable), or at least 1, got {top_k}.")
    min_p = number("min_p", 0.0)
    if isinstance(min_p, int | float) and not 0.0 <= min_p <= 1.0:
        _refuse(f"min_p must be in [0, 1], got {min_p}.")
    stop = body.get("stop")
    if stop == "" or (isinstance(stop, list) and any(s == "" for s in stop)):
        _refuse("stop cannot contain an empty string.")


def check_structured_outputs(body: dict) -> None:
    """A regex constraint that does not parse gets vLLM's 400 (measured on 0.32.0: `(`, `[`,
    `a{2,1}` → `Grammar error: ... invalid regex ...`). Parseability is judged by Python's
    `re`; the engine's own regex crate differs at the edges (a lone backslash got an empty
    completion from real 0.32 rather than a 400)."""
    outputs = body.get("structured_outputs")
    regex = outputs.get("regex") if isinstance(outputs, dict) else None
    if not isinstance(regex, str) or not regex:
        return
    try:
        re.compile(regex)
    except re.error as e:
        raise BadRequest(400, f'Grammar error: invalid regex "{regex}" (in regex): regex '
                         f"parse error: {e}", "BadRequestError") from None


def _refuse(message: str, parameter: str | None = None, value: object = None) -> None:
    if parameter is not None:
        message = f"{message} (parameter={parameter}, value={value})"
    raise BadRequest(400, message, "BadRequestError", parameter)


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
