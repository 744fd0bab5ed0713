"""Sampling and prompt parameters that crashed or failed vLLM versions: top_k past the
vocabulary, empty prompts, streamed echoes, out-of-range max_tokens and truncation.

Values are read as vLLM reads them (warden.guard.lax): `"9999999"` and `1e7` are a top_k of
9999999, `"0"`, `0.0` and `false` a max_tokens of 0, `"true"` and `1` an echo.
"""

from __future__ import annotations

from warden.guard.lax import lax_bool, lax_int
from warden.guard.rule import NORMALIZE, REJECT, ROUTE, Finding, Rule, RuleContext

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
# Endpoints that only run the tokenizer: an empty prompt there is an empty answer.
TOKENIZER_ONLY = frozenset({"/tokenize", "/detokenize"})
FAILS = "vLLM fails on this request instead of answering it"


# -- top_k ---------------------------------------------------------------------------------
# vLLM clamps a top_k past the vocabulary to it (V0's sampler always did; V1's input batch
# from 0.8.0): top_k >= vocabulary keeps every token, the same as no top_k. V1 before 0.8 and
# hardware plugins built on it passed it to torch.topk, which fails ("selected index k out of
# range") and takes the engine down. The vocabulary size, not "disabled" (-1, or 0 from
# 0.11), is written back: a disabled row next to an enabled one crashed another plugin's
# sampler (vllm-project/vllm-metal#646), and every version reads top_k = vocabulary as
# "all tokens".

def _top_k_past_vocab(body: dict, ctx: RuleContext) -> Finding | None:
    vocab = ctx.facts.vocab_size
    top_k = lax_int(body.get("top_k"))
    if vocab is None or top_k is None or top_k <= vocab:
        return None
    return Finding(f"top_k={top_k} is larger than the model's vocabulary of {vocab}", "top_k")


def _clamp_top_k(body: dict, ctx: RuleContext) -> None:
    if ctx.facts.vocab_size is not None:
        body["top_k"] = ctx.facts.vocab_size


# -- max_tokens ----------------------------------------------------------------------------
# vLLM refuses an output limit below 1 ("max_tokens must be at least 1") on every version;
# the schema validation refuses it too, strictly typed, so this rule is built only without
# validation, to read `"0"`, `0.0` and `false` as vLLM does. Two zeros are left alone: a
# completions max_tokens of 0 with echo (the prompt scored, nothing generated: vLLM runs it
# as 1), and chat's max_completion_tokens of 0, which vLLM before 0.32 read as unset.

def _max_tokens_below_one(body: dict, ctx: RuleContext) -> Finding | None:
    value = lax_int(body.get("max_tokens"))
    if value is not None and value < 1 and not (
            value == 0 and ctx.path == COMPLETIONS and lax_bool(body.get("echo"))):
        return Finding(f"max_tokens={value} asks for no output (at least 1)", "max_tokens")
    value = lax_int(body.get("max_completion_tokens"))
    if value is not None and value < 0:
        return Finding(f"max_completion_tokens={value} is negative", "max_completion_tokens")
    return None


# -- empty prompts -------------------------------------------------------------------------
# Before 0.5.5 an empty prompt reached the scheduler with no tokens and an assertion killed
# the engine (a tokenizer that adds a BOS token made "" one token; one that does not, none).
# 0.5.5 refuses an empty prompt with a 400; "" on a BOS model is served. So these are routed
# to backends from 0.5.5 on, and refused only where none serves the model.

def _empty_prompt(body: dict, ctx: RuleContext) -> Finding | None:
    if ctx.path in TOKENIZER_ONLY:
        return None
    for field in ("prompt", "input"):
        value = body.get(field)
        if value == "" or value == []:
            return Finding(f"{field} is empty", field)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item == "" or item == []:
                    return Finding(f"{field}[{i}] is empty", f"{field}[{i}]")
    return None


# With add_generation_prompt false, vLLM's chat endpoint names the reply's role after the
# last message (`messages[-1]`, every version): with no message at all, an IndexError and a
# 500.

def _no_messages(body: dict, ctx: RuleContext) -> Finding | None:
    if ctx.path == CHAT and body.get("messages") == [] \
            and lax_bool(body.get("add_generation_prompt")) is False:
        return Finding("messages is empty and add_generation_prompt is false: there is no "
                       "conversation to continue", "messages")
    return None


# -- echo in streams -----------------------------------------------------------------------
# A streamed completion with echo fails in vLLM's streaming code (it asserted prompt logprobs
# for the echoed prompt, even without logprobs asked) from 0.5 to 0.9.1: the client gets a
# stream cut short. 0.9.2 serves it. A max_tokens of 0 takes another path and is served.

def _streamed_echo(body: dict, ctx: RuleContext) -> Finding | None:
    if ctx.path != COMPLETIONS or not lax_bool(body.get("stream")) \
            or not lax_bool(body.get("echo")) or lax_int(body.get("max_tokens")) == 0:
        return None
    return Finding("echo in a streamed completion", "echo")


# -- truncate_prompt_tokens ----------------------------------------------------------------
# -1 (the context length) or a count of tokens to keep; vLLM answers anything below -1, or
# above the context length, with a 400 itself. Its layers disagreed on which values they take
# (-1 passed the request model and failed the sampling parameters, vllm-project/vllm#22635),
# and truncating to a full context crashed the V1 model runner offline (#22761).

def _truncation_out_of_range(body: dict, ctx: RuleContext) -> Finding | None:
    value = lax_int(body.get("truncate_prompt_tokens"))
    if value is None:
        return None
    if value < -1:
        return Finding(f"truncate_prompt_tokens={value} (-1 or a count of tokens)",
                       "truncate_prompt_tokens")
    length = ctx.facts.max_model_len
    if length is not None and value > length:
        return Finding(f"truncate_prompt_tokens={value} is more than the model's context of "
                       f"{length}", "truncate_prompt_tokens")
    return None


def _room(body: dict, length: int) -> int:
    """The prompt's share of the context that leaves room for the output asked for (at
    least one token; without max_tokens, one: vLLM then fills what is left)."""
    asked = lax_int(body.get("max_completion_tokens"))
    if asked is None or asked < 1:
        asked = lax_int(body.get("max_tokens"))
    return length - max(1, asked if asked is not None else 1)


def _truncation_without_room(body: dict, ctx: RuleContext) -> Finding | None:
    """-1 (truncate to the context) or a count that leaves the output no room: the V1 model
    runner asserted the context's end and EngineCore died (#23683)."""
    if not ctx.path.endswith("completions"):
        return None  # (embeddings, scoring: no output to leave room for)
    value = lax_int(body.get("truncate_prompt_tokens"))
    length = ctx.facts.max_model_len
    if value is None or length is None or not (value == -1 or 0 < value <= length):
        return None  # (other values: trunc-prompt-tokens-range's)
    room = _room(body, length)
    if room < 1 or (value != -1 and value <= room):
        return None
    return Finding(f"truncate_prompt_tokens={value} leaves no room in the model's context of "
                   f"{length} for the output", "truncate_prompt_tokens")


def _leave_room(body: dict, ctx: RuleContext) -> None:
    length = ctx.facts.max_model_len
    if length is not None and _room(body, length) >= 1:
        body["truncate_prompt_tokens"] = _room(body, length)


SAMPLING_RULES: tuple[Rule, ...] = (
    Rule("samp-top-k-past-vocab", "a top_k larger than the vocabulary (the same as all tokens)",
         "vllm-project/vllm#14181 (V1 sampler, unclamped before 0.8), "
         "torch-spyre/sendnn-inference#542 (a vLLM plugin's engine died on it)", None,
         NORMALIZE, frozenset({"top_k"}), _top_k_past_vocab, needs_vocab=True,
         fix_in_context=_clamp_top_k, remedy="top_k becomes the vocabulary size"),
    Rule("samp-max-tokens-below-one",
         "max_tokens below 1 (but 0 with echo on completions) or a negative "
         "max_completion_tokens, however spelled",
         "defensive: vLLM refuses them itself (sampling_params.py); the schema validation "
         "refuses them when it is on", None, REJECT,
         frozenset({"max_tokens", "max_completion_tokens"}), _max_tokens_below_one,
         covered_by_validation=True, harm="vLLM refuses it"),
    Rule("prompt-empty", "an empty prompt or input (\"\", [], [\"\"], [[]])",
         "vllm-project/vllm#7283, #7632 (the engine died on it), fixed by #7746 in 0.5.5",
         (0, 5, 5), ROUTE, frozenset({"prompt", "input"}), _empty_prompt),
    Rule("chat-no-messages", "no messages at all with add_generation_prompt false",
         "defensive: vLLM reads messages[-1] for the reply's role (serving_chat), an "
         "IndexError answered 500", None, REJECT, frozenset({"add_generation_prompt"}),
         _no_messages, harm=FAILS),
    Rule("echo-stream", "echo in a streamed completion (with or without logprobs)",
         "vllm-project/vllm#2703 (the stream dies; reported again on 0.6.6.post1), #1967; "
         "vLLM's streaming echo asserted prompt logprobs until 0.9.2", (0, 9, 2), ROUTE,
         frozenset({"echo"}), _streamed_echo, harm=FAILS),
    Rule("trunc-prompt-tokens-range",
         "truncate_prompt_tokens below -1 or above the model's context length",
         "defensive: vLLM answers them 400 itself; vllm-project/vllm#22635 (its layers "
         "disagreed on the values taken), #22761 (a full-context truncation crashed V1)",
         None, REJECT, frozenset({"truncate_prompt_tokens"}), _truncation_out_of_range,
         harm="vLLM refuses it"),
    Rule("trunc-prompt-no-room",
         "truncate_prompt_tokens of -1 (the whole context) or a count that leaves the output "
         "no room in the model's context",
         "vllm-project/vllm#23683 (truncating to the full context: the V1 model runner's "
         "assertion killed EngineCore)", None, NORMALIZE,
         frozenset({"truncate_prompt_tokens"}), _truncation_without_room,
         fix_in_context=_leave_room,
         remedy="truncate to the context less the output asked for (at least one token)"),
)
