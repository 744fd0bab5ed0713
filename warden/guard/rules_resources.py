"""Resource amplifiers (one request asking for many sequences, whole-vocabulary logprobs) and
request-supplied chat templates.

These are valid OpenAI shapes that make one request cost what a thousand should: `n`/`best_of`
multiply the sequences held in the KV cache, and `max_tokens` each one's length (absent, vLLM
generates up to the context length); `prompt_logprobs: -1` allocates prompt length x
vocabulary; a chat template sent with the request is Jinja the API server renders with no
bound on its work. The bounds are `guard.limits`; the context length is the model's (config,
or learned from /v1/models).

A prompt longer than the context is refused by every vLLM version; before 0.7.1 (V1) and
where vLLM fitted the context to memory but still admitted the model's full length, it
reached the engine and killed it, and until an early-fail guard vLLM tokenized any prompt in
full first. The guard measures the prompt by an under-estimate (warden.guard.prompt_size) and
only in large bodies. A prompt plus `max_tokens` past the context is left to vLLM: before
0.32 it answers 400, from 0.32 it clamps `max_tokens` and serves the request.
"""

from __future__ import annotations

from warden.guard.lax import lax_bool, lax_int
from warden.guard.prompt_size import prompt_tokens_at_least
from warden.guard.rule import REJECT, Finding, Rule, RuleContext

AMPLIFIES = "one request would take what many should"
CHAT = "/v1/chat/completions"
TOKENIZER_ONLY = frozenset({"/tokenize", "/detokenize"})
# A body below this cannot hold a prompt past any context of 128 tokens or more, counted as
# the rule counts (256 characters a token); below it the guard does not look.
LARGE_BODY = 32 * 1024


def _output_length(body: dict, ctx: RuleContext) -> tuple[str, int | None]:
    """Each sequence's output limit as vLLM picks it: chat's max_completion_tokens when set
    (0.11 skips a 0), else max_tokens (0 with echo: one), else (absent, or one vLLM refuses)
    the context length."""
    if ctx.path == CHAT:
        value = lax_int(body.get("max_completion_tokens"))
        if value is not None and value > 0:
            return "max_completion_tokens", value
    value = lax_int(body.get("max_tokens"))
    if value is not None and value > 0:
        return "max_tokens", value
    if value == 0 and ctx.path != CHAT and lax_bool(body.get("echo")):
        return "max_tokens", 1
    return "max_tokens", ctx.facts.max_model_len


def _many_sequences(body: dict, ctx: RuleContext) -> Finding | None:
    limits = ctx.limits
    sequences = 1
    for field in ("n", "best_of"):
        value = lax_int(body.get(field))  # "65" and 65.0 are 65 to vLLM
        if value is not None:
            if value > limits.max_n:
                return Finding(f"{field}={value} asks for more than {limits.max_n} sequences",
                               field)
            sequences = max(sequences, value)
    if sequences == 1:
        return None
    field, length = _output_length(body, ctx)
    if length is not None and sequences * length > limits.max_generated_tokens:
        return Finding(f"{sequences} sequences x {field}={length} is more than "
                       f"{limits.max_generated_tokens} tokens", field)
    return None


def _many_logprobs(body: dict, ctx: RuleContext) -> Finding | None:
    """-1 asks for the whole vocabulary (prompt_logprobs, and top_logprobs / completions'
    logprobs where vLLM allows it); chat's `logprobs` is a boolean."""
    limit = ctx.limits.max_logprobs
    fields = ("top_logprobs", "prompt_logprobs") if ctx.path == CHAT else \
        ("logprobs", "top_logprobs", "prompt_logprobs")
    for field in fields:
        value = lax_int(body.get(field))
        if value == -1:
            return Finding(f"{field}=-1 asks for the whole vocabulary at every "
                           f"{'prompt ' if field == 'prompt_logprobs' else ''}position", field)
        if value is not None and value > limit:
            return Finding(f"{field}={value} is more than {limit}", field)
    return None


def _prompt_cap(body: dict, ctx: RuleContext) -> int | None:
    """The prompt's length once vLLM truncates it (truncate_prompt_tokens: a count, or -1 for
    the context length), or None when it is not truncated."""
    keep = lax_int(body.get("truncate_prompt_tokens"))
    if keep is None:
        return None
    return ctx.facts.max_model_len if keep == -1 else keep


def _prompt_too_long(body: dict, ctx: RuleContext) -> Finding | None:
    length = ctx.facts.max_model_len
    if length is None or ctx.path in TOKENIZER_ONLY or _prompt_cap(body, ctx) is not None:
        return None  # (/tokenize counts a long text's tokens: no engine runs)
    tokens, param = prompt_tokens_at_least(body, ctx.limits.max_chars_per_token)
    if tokens <= length:
        return None
    return Finding(f"the prompt is at least {tokens} tokens, more than the model's context "
                   f"of {length}", param)


def _prompt_logprobs_asked(body: dict, ctx: RuleContext) -> int | None:
    """The prompt logprobs the engine computes: prompt_logprobs, else echo's (completions:
    logprobs; chat: top_logprobs, 0 when absent). -1 (whole vocabulary) is amp-logprobs'."""
    asked = lax_int(body.get("prompt_logprobs"))
    if asked is not None or not lax_bool(body.get("echo")):
        return asked
    if ctx.path == CHAT:
        return lax_int(body.get("top_logprobs", 0))
    return lax_int(body.get("logprobs"))


def _prompt_logprobs_memory(body: dict, ctx: RuleContext) -> Finding | None:
    vocab = ctx.facts.vocab_size
    if vocab is None or _prompt_logprobs_asked(body, ctx) is None:
        return None
    tokens, _param = prompt_tokens_at_least(body, ctx.limits.max_chars_per_token)
    cap = _prompt_cap(body, ctx)
    if cap is not None and cap >= 0:
        tokens = min(tokens, cap)
    needed = tokens * vocab * 4  # float32 logits, one row per prompt token
    bound = ctx.limits.max_prompt_logprobs_bytes
    if needed <= bound:
        return None
    param = "prompt_logprobs" if body.get("prompt_logprobs") is not None else "echo"
    return Finding(f"prompt logprobs for a prompt of at least {tokens} tokens over a "
                   f"vocabulary of {vocab} take at least {needed} bytes, more than {bound}",
                   param)


def _request_template(body: dict, ctx: RuleContext) -> Finding | None:
    if body.get("chat_template") is not None:
        return Finding("a chat template sent with the request", "chat_template")
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("chat_template") is not None:
        return Finding("a chat template sent in chat_template_kwargs",
                       "chat_template_kwargs.chat_template")
    return None


RESOURCE_RULES: tuple[Rule, ...] = (
    Rule("amp-sequences",
         "n or best_of above guard.limits.max_n, or sequences x max_tokens above "
         "max_generated_tokens",
         "resource amplifier: every sequence holds its own KV cache blocks", None, REJECT,
         frozenset({"n", "best_of"}), _many_sequences, harm=AMPLIFIES),
    Rule("amp-logprobs",
         "logprobs, top_logprobs or prompt_logprobs above guard.limits.max_logprobs, or "
         "-1 (the whole vocabulary)",
         "local-inference-lab/vllm#264 (prompt_logprobs=-1: prompt x vocab allocation, OOM), "
         "vllm-project/vllm#16836, #5890", None, REJECT,
         frozenset({"logprobs", "top_logprobs", "prompt_logprobs"}), _many_logprobs,
         harm=AMPLIFIES),
    Rule("amp-prompt-logprobs-memory",
         "prompt logprobs (prompt_logprobs, or echo with logprobs) whose prompt x vocabulary "
         "float32 logits exceed guard.limits.max_prompt_logprobs_bytes",
         "vllm-project/vllm#5907 (logprobs memory is outside vLLM's profile; #5890, #38830: "
         "echo with logprobs ran it out of memory), gonka-ai/gonka#1171 (vLLM 0.20 died "
         "allocating 3.8 GiB of them)", None, REJECT,
         frozenset({"prompt_logprobs", "echo"}), _prompt_logprobs_memory, needs_vocab=True,
         harm=AMPLIFIES),
    Rule("ctx-prompt-too-long",
         "a prompt longer than the model's context, counted by an under-estimate, in bodies "
         "of at least 32 KiB",
         "vllm-project/vllm#12567 (V1 engine died on it; fixed by #12600 in 0.7.1), #40302 "
         "(a fitted context still admits the model's full length), #31229 (vLLM tokenized "
         "any prompt in full first)", None, REJECT, frozenset(), _prompt_too_long,
         min_body=LARGE_BODY),
    Rule("ct-request-template",
         "a Jinja chat template supplied by the request (rendered by the API server, with "
         "no bound on its work)",
         "NVIDIA/Megatron-LM#6818 (the same class: nested loops pin the server); vLLM's "
         "--trust-request-chat-template", None, REJECT,
         frozenset({"chat_template", "chat_template_kwargs"}), _request_template,
         harm="a request's own chat template runs unbounded work in the API server"),
)
