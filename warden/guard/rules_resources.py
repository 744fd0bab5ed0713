"""Resource amplifiers (one request asking for many sequences, whole-vocabulary logprobs) and
request-supplied chat templates.

These are valid OpenAI shapes that make one request cost what a thousand should: `n`/`best_of`
multiply the sequences held in the KV cache, and `max_tokens` each one's length (absent, vLLM
generates up to the context length); `prompt_logprobs: -1` allocates prompt length x
vocabulary; a chat template sent with the request is Jinja the API server renders with no
bound on its work. The bounds are `guard.limits`; the context length is the model's (config,
or learned from /v1/models). A `max_tokens` past the context length is left to vLLM, which
answers it 400 itself.
"""

from __future__ import annotations

from warden.guard.lax import lax_bool, lax_int
from warden.guard.rule import REJECT, Finding, Rule, RuleContext

AMPLIFIES = "one request would take what many should"
CHAT = "/v1/chat/completions"


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
    Rule("ct-request-template",
         "a Jinja chat template supplied by the request (rendered by the API server, with "
         "no bound on its work)",
         "NVIDIA/Megatron-LM#6818 (the same class: nested loops pin the server); vLLM's "
         "--trust-request-chat-template", None, REJECT,
         frozenset({"chat_template", "chat_template_kwargs"}), _request_template,
         harm="a request's own chat template runs unbounded work in the API server"),
)
