"""What a simulated node reads from a request: prompt token ids, limits, generation seed;
and vLLM's 4xx answers when a request is refused."""

from __future__ import annotations

import hashlib
import math
import re

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from warden.sim import vllm_format as fmt
from warden.sim.tokenizer import DEFAULT, Tokenizer


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


CONSTRAINTS = ("json", "regex", "choice", "grammar", "json_object", "structural_tag")


@pydantic_dataclass
class StructuredOutputs:
    """vLLM's StructuredOutputsParams (vllm/sampling_params.py, the same fields from 0.11 to
    0.32): a pydantic dataclass read in lax mode, as vLLM reads it — `"json_object": 0` or
    `"false"` is false, `"json": 0` is refused."""

    json: str | dict | None = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None
    json_object: bool | None = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    disable_fallback: bool = False
    whitespace_pattern: str | None = None
    structural_tag: str | None = None


_READ_STRUCTURED_OUTPUTS = TypeAdapter(StructuredOutputs)


def structured_outputs_of(body: dict) -> StructuredOutputs | None:
    """The request's structured outputs as vLLM's API server reads them (None when absent),
    or its 400: a value pydantic cannot read, two constraints, an empty choice."""
    outputs = body.get("structured_outputs")
    if outputs is None:
        return None
    try:
        params = _READ_STRUCTURED_OUTPUTS.validate_python(outputs)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in ("structured_outputs", *first["loc"]))
        raise BadRequest(400, f"{where}: {first['msg']}", "BadRequestError",
                         "structured_outputs") from None
    if sum(getattr(params, field) is not None for field in CONSTRAINTS) > 1:
        raise BadRequest(400, "You can only use one kind of structured outputs constraint "
                         f"but multiple are specified: {outputs}", "BadRequestError")
    if params.choice == []:
        raise BadRequest(400, "Choice '[]' cannot be an empty list", "BadRequestError")
    return params


def check_structured_outputs(body: dict) -> None:
    """vLLM's API-server checks of structured outputs (`structured_outputs_of`), and a regex
    constraint that does not parse gets vLLM's 400 (measured on 0.32.0: `(`, `[`, `a{2,1}` →
    `Grammar error: ... invalid regex ...`). Parseability is judged by Python's `re`; the
    engine's own regex crate differs at the edges (a lone backslash got an empty completion
    from real 0.32 rather than a 400)."""
    params = structured_outputs_of(body)
    regex = params.regex if params is not None else None
    if not regex:
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
    max_tokens = _first_set(body, "max_completion_tokens", "max_tokens", "max_output_tokens")
    if max_tokens is None:
        max_tokens = limit - prompt_tokens
    elif max_tokens == 0 and body.get("echo") is True and "prompt" in body:
        max_tokens = 1  # completions' echo without generation: vLLM runs one step
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest(400, f"max_tokens must be at least 1, got {max_tokens}.",
                         "BadRequestError", "max_tokens")
    if max_tokens > limit:
        raise BadRequest(400, f"max_tokens={max_tokens} cannot be greater than "
                         f"max_model_len={limit}. Please request fewer output tokens. "
                         f"(parameter=max_tokens, value={max_tokens})",
                         "BadRequestError", "max_tokens")
    return max_tokens


def _first_set(body: dict, *names: str) -> object:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return None


def prompt_ids_of(body: dict, chat: bool, tokenizer: Tokenizer = DEFAULT) -> list[int]:
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "messages must be a non-empty list", "BadRequestError",
                             "messages")
        return tokenizer.encode_chat(messages)
    prompt = body.get("prompt", body.get("input", ""))
    if isinstance(prompt, list):  # token ids, or a batch of prompts (simulated as one)
        if all(isinstance(t, int) for t in prompt):
            return list(prompt) or [0]
        return [t for p in prompt
                for t in (p if isinstance(p, list) else tokenizer.encode(str(p)))] or [0]
    return tokenizer.encode(str(prompt)) or [0]


def seed_of(body: dict) -> int:
    """Output depends on the model and the prompt only (as greedy decoding would)."""
    prompt = [body["model"], body.get("messages"), body.get("prompt"), body.get("input")]
    digest = hashlib.blake2b(orjson.dumps(prompt, default=str), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def embed(text: str, dims: int = 16) -> list[float]:
    digest = hashlib.blake2b(text.encode(), digest_size=dims).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest]
