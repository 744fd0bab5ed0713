"""Token-id parameters checked against the model's vocabulary.

A token id at or past the vocabulary size indexes past the end of the logits on the device:
vLLM's V0 engine died on it (an IndexError in the logits processor), the V1 engine died on an
out-of-vocabulary `logit_bias` until it validated them, and `stop_token_ids` is still not
validated (a device-side assert kills every rank on backends with bounds-checked kernels).
These rules act only for models whose vocabulary size is known: learned from the backends
(fleet/facts_probe) or configured (`guard.models`).

Ids are read as vLLM reads them: list items through pydantic's lax integers (`"5000"` and
`5000.0` are 5000; an integer of 2**64 or more, which orjson reads as a float, is outside any
vocabulary), logit_bias keys through Python's `int()` (vLLM converts them so: `"1_000"` and
`" 7"` are token ids there).
"""

from __future__ import annotations

from warden.guard.lax import INT64, lax_int
from warden.guard.rule import REJECT, Finding, Rule, RuleContext


def _first_outside(ids: object, vocab: int) -> object | None:
    """The first item of `ids` that is not a token id of this vocabulary, or None."""
    if not isinstance(ids, list):
        return None
    for token in ids:
        if type(token) is int:  # (the usual spelling, tested first)
            if not 0 <= token < vocab:
                return token
            continue
        if type(token) is float and token.is_integer() and abs(token) >= INT64:
            return token   # (an integer literal past 64 bits, which orjson reads as a float
            #               and vLLM as the integer it is: past any vocabulary)
        number = lax_int(token)
        if number is not None and not 0 <= number < vocab:
            return token
    return None


def _key_id(key: str) -> int | None:
    """A logit_bias key as vLLM converts it (`int(key)`), or None."""
    try:
        return int(key)
    except ValueError:
        return None


def _message(param: str, token: object, vocab: int) -> Finding:
    return Finding(f"{param} holds token id {token}, outside the model's vocabulary of "
                   f"{vocab}", param)


def _logit_bias(body: dict, ctx: RuleContext) -> Finding | None:
    vocab = ctx.facts.vocab_size
    bias = body.get("logit_bias")
    if vocab is None or not isinstance(bias, dict):
        return None
    for key in bias:
        token = _key_id(key)
        if token is not None and not 0 <= token < vocab:
            return _message("logit_bias", key, vocab)
    return None


def _listed(field: str):
    def find(body: dict, ctx: RuleContext) -> Finding | None:
        vocab = ctx.facts.vocab_size
        if vocab is None:
            return None
        token = _first_outside(body.get(field), vocab)
        return None if token is None else _message(field, token, vocab)
    return find


# Token ids in fields the other rules do not read: logprobs of chosen tokens (chat and
# completions, vLLM 0.34), generative scoring's labels, the token-in-token-out generate
# endpoint's prompt, /detokenize's tokens and the derender endpoints' prompts (ids, or lists
# of them).
OTHER_ID_FIELDS = ("logprob_token_ids", "label_token_ids", "token_ids", "tokens",
                   "prompt_token_ids")


def _other_ids(body: dict, ctx: RuleContext) -> Finding | None:
    vocab = ctx.facts.vocab_size
    if vocab is None:
        return None
    for field in OTHER_ID_FIELDS:
        value = body.get(field)
        if not isinstance(value, list):
            continue
        batches = [item for item in value if isinstance(item, list)] or [value]
        for ids in batches:
            token = _first_outside(ids, vocab)
            if token is not None:
                return _message(field, token, vocab)
    return None


def _prompt_ids(body: dict, ctx: RuleContext) -> Finding | None:
    """A completions prompt (or embeddings input) given as token ids, or lists of them. A
    list of strings is text; any other list is read as ids, as pydantic's union does (it
    reads `[1.0, "5000"]` as the ids 1 and 5000)."""
    vocab = ctx.facts.vocab_size
    if vocab is None:
        return None
    for field in ("prompt", "input"):
        value = body.get(field)
        if not isinstance(value, list) or not value:
            continue
        if all(type(item) is str for item in value):
            continue
        batches = value if isinstance(value[0], list) else [value]
        for i, ids in enumerate(batches):
            token = _first_outside(ids, vocab)
            if token is not None:
                param = field if batches is not value else f"{field}[{i}]"
                return _message(param, token, vocab)
    return None


TOKEN_ID_RULES: tuple[Rule, ...] = (
    Rule("tok-logit-bias-oov", "a logit_bias token id outside the vocabulary",
         "vllm-project/vllm#16529 (V1 EngineCore crash), #6866 (V0 AsyncEngineDeadError)",
         None, REJECT, frozenset({"logit_bias"}), _logit_bias, needs_vocab=True),
    Rule("tok-stop-token-ids-oov", "a stop_token_ids entry outside the vocabulary",
         "vllm-project/vllm#54195 (not validated; a device-side assert kills the engine)",
         None, REJECT, frozenset({"stop_token_ids"}), _listed("stop_token_ids"),
         needs_vocab=True),
    Rule("tok-allowed-token-ids-oov", "an allowed_token_ids entry outside the vocabulary",
         "vllm-project/vllm#16529 (the same logits indexing as logit_bias)", None, REJECT,
         frozenset({"allowed_token_ids"}), _listed("allowed_token_ids"), needs_vocab=True),
    Rule("tok-prompt-ids-oov", "a prompt given as token ids with one outside the vocabulary",
         "vllm-project/vllm#26797 ('Token id ... is out of vocabulary'), #6866 (V0 crash)",
         None, REJECT, frozenset({"prompt", "input"}), _prompt_ids, needs_vocab=True),
    Rule("tok-other-ids-oov",
         "a token id outside the vocabulary in logprob_token_ids, label_token_ids, token_ids, "
         "tokens or prompt_token_ids",
         "vllm-project/vllm#34468 (/detokenize answered an id past int64 with a 500 until "
         "0.17); the rest defensive: vLLM range-checks most of them itself, as it does "
         "prompt ids (#26797)", None, REJECT, frozenset(OTHER_ID_FIELDS), _other_ids,
         needs_vocab=True),
)
