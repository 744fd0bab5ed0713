"""What a request hands the chat template: chat_template_kwargs, and control-token text in
its messages.

chat_template_kwargs reach the template renderer (and, before vLLM 0.11, the tokenizer's
apply_chat_template itself): a request could replace the template, switch `tokenize` on, or
pass a structure the template walks without bound. Only the listed switches pass, each a
string, number, boolean or null, a string of bounded length.

Messages: a user's or a tool's text holding a turn marker (`<|im_end|>`) or a
media placeholder (`<image>`) is read by the tokenizer as that control token: a forged turn,
or a media token with no media behind it, which crashed multimodal engines. The guard
escapes such text rather than refusing it: it puts an invisible WORD JOINER (U+2060) after the
marker's first character, so the visible text is unchanged and the tokenizer meets ordinary
characters — what a server does when it tokenizes message text without parsing special
tokens (llama.cpp's --escape-special-in-input; vllm-project/vllm#31735 proposed it), which a
gateway, holding no tokenizer, cannot do itself. Assistant messages are left alone: they are
the model's own output, and templates read markers in them (`</think>`, `<tool_call>`). Media
placeholders are escaped even in a message that carries media: a template that emits one per
image part makes a written one an extra (the Llama 3.2 Vision crash); a client that placed its
images by writing the placeholder (vLLM allows it for some models) gets them first instead.

The markers are the model's special tokens when known (`guard.models.*.special_tokens`),
else the common chat-template turn markers; the media placeholders always. The guard looks
only at bodies with a `<` in some text (decoded: a JSON escape cannot hide one): bracketed
markers (`[INST]`) in a body without one are not seen. Such a body costs one regular-expression
scan of each checked text that holds a marker's first character (see `_index`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from warden.config.guard_schema import RESERVED_TEMPLATE_KWARGS
from warden.guard.rule import NORMALIZE, REJECT, Finding, Rule, RuleContext

ESCAPE = "\u2060"  # WORD JOINER: invisible, no meaning of its own
# Turn and role markers of common chat templates (ChatML/Qwen, Llama 3 and 4, Phi, Granite,
# gpt-oss, Gemma, Mistral, DeepSeek, Command R, GLM), each found in vLLM's templates or
# model code.
TURN_MARKERS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
    "<|header_start|>", "<|header_end|>", "<|eot|>", "<|start_of_role|>", "<|end_of_role|>",
    "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|start|>", "<|message|>",
    "<|channel|>", "<|return|>", "<|call|>", "<start_of_turn>", "<end_of_turn>", "[INST]",
    "[/INST]", "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|observation|>",
)
# Media placeholders vLLM's multimodal models expand (LLaVA, Qwen-VL, Llama 3.2 Vision,
# Gemma 3, InternVL, Pixtral, Qwen-Audio, ...).
MEDIA_PLACEHOLDERS = (
    "<image>", "<video>", "<audio>", "<|image|>", "<|image_pad|>", "<|video_pad|>",
    "<|vision_start|>", "<|vision_end|>", "<|AUDIO|>", "<|audio_bos|>", "<start_of_image>",
    "<IMG_CONTEXT>", "<img>", "[IMG]",
)
# The roles whose text is the application's own, which may mean its markers (`<think>` in a
# prompt that shows the model how to reason): every other role's text is checked, a user's, a
# tool's result (a web page, a file), and any role vLLM takes that is none of these three as
# spelled ("User": its templates render whatever role they are given).
_OWN_ROLES = frozenset({"system", "developer", "assistant"})
SCALARS = (str, int, float, bool, type(None))


# -- chat_template_kwargs -------------------------------------------------------------------

LONGEST_LIST = 64


def _kwarg_problem(key: str, value: object, allowed: list[str] | None,
                   longest: int) -> str | None:
    if key in RESERVED_TEMPLATE_KWARGS or (allowed is not None and key not in allowed):
        return "is not a template switch this gateway passes"
    items = value if isinstance(value, list) and len(value) <= LONGEST_LIST else [value]
    for item in items:
        if not isinstance(item, SCALARS):
            return ("must be a string, number, boolean or null, or a list of up to "
                    f"{LONGEST_LIST} of them")
        if isinstance(item, str) and len(item) > longest:
            return f"is longer than {longest} characters"
    return None


def _allowed(ctx: RuleContext) -> list[str] | None:
    own = ctx.facts.chat_template_kwargs
    return ctx.limits.chat_template_kwargs if own is None else own


def _bad_kwargs(body: dict, ctx: RuleContext) -> Finding | None:
    kwargs = body.get("chat_template_kwargs")
    if not isinstance(kwargs, dict):
        return None  # (null is absent; another type vLLM refuses itself)
    allowed, longest = _allowed(ctx), ctx.limits.max_chat_template_kwarg_chars
    for key, value in kwargs.items():
        problem = _kwarg_problem(key, value, allowed, longest)
        if problem is not None:
            return Finding(f"chat_template_kwargs.{key} {problem}",
                           f"chat_template_kwargs.{key}")
    return None


def _drop_bad_kwargs(body: dict, ctx: RuleContext) -> None:
    kwargs = body.get("chat_template_kwargs")
    if isinstance(kwargs, dict):
        allowed, longest = _allowed(ctx), ctx.limits.max_chat_template_kwarg_chars
        body["chat_template_kwargs"] = {
            key: value for key, value in kwargs.items()
            if _kwarg_problem(key, value, allowed, longest) is None}


# -- control tokens in message text ---------------------------------------------------------

# A marker set as (the characters markers begin with, one regular expression of them all).
Index = tuple[str, "re.Pattern[str]"]


@lru_cache(maxsize=64)
def _index(markers: tuple[str, ...]) -> Index:
    """The markers as one expression shaped as their prefix tree (`<(?:\\|(?:im_(?:start|
    end)...`): the engine tests each character once against the first characters, and
    follows a branch only where a marker can continue; no pattern of it can backtrack far
    (a literal tree). Measured on 2.6 KB, interpreted: 9 us for code with 70 `<`, 17 us
    for HTML, where splitting at `<` and comparing each piece took 7 and 33 us."""
    tree: dict[str, dict] = {}
    for marker in markers:
        if len(marker) < 2 or marker.isspace():
            continue  # (nothing to search for: one character, or blanks)
        node = tree
        for char in marker:
            node = node.setdefault(char, {})
        node[""] = {}
    return "".join(tree), re.compile(_branches(tree) if tree else "(?!)")


def _branches(node: dict[str, dict]) -> str:
    """The expression of a prefix tree's node (its markers' rests); greedy: the longest."""
    ends = "" in node
    alternatives = [re.escape(char) + _branches(below)
                    for char, below in sorted(node.items()) if char]
    if not alternatives:
        return ""
    body = alternatives[0] if len(alternatives) == 1 and not ends \
        else "(?:" + "|".join(alternatives) + ")"
    return body + "?" if ends else body


def _markers(ctx: RuleContext) -> tuple[str, ...]:
    """The model's own special tokens when known (learned or configured: its media
    placeholders among them, if it has any), else every common marker and placeholder. (So
    an HTML `<video>` in a text-only model's messages is left alone once its tokens are
    known: it is no token of that model.)"""
    special = ctx.facts.special_tokens
    return tuple(special) if special else (*TURN_MARKERS, *MEDIA_PLACEHOLDERS)


def _found(text: str, index: Index) -> list[str]:
    """The markers `text` holds."""
    firsts, pattern = index
    for first in firsts:
        if first in text:  # (most texts hold none of them: a search in C each)
            return list(dict.fromkeys(pattern.findall(text)))
    return []


def _texts(body: dict) -> Iterator[tuple[str, dict, str]]:
    """(param, container, key) of every text of a checked role: a message's string content
    or a text part's text, in chat messages and Responses API input items."""
    for carrier in ("messages", "input"):
        items = body.get(carrier)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            role = item.get("role") if isinstance(item, dict) else None
            if not isinstance(role, str) or role in _OWN_ROLES:
                continue
            content = item.get("content")
            if isinstance(content, str):
                yield f"{carrier}[{i}].content", item, "content"
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        yield f"{carrier}[{i}].content[{j}].text", part, "text"


def _control_text(body: dict, ctx: RuleContext) -> Finding | None:
    index = _index(_markers(ctx))
    for param, holder, key in _texts(body):
        found = _found(holder[key], index)
        if found:
            return Finding(f"{param} holds {found[0]!r}, a control token of the chat template",
                           param)
    return None


def _escape_control_text(body: dict, ctx: RuleContext) -> None:
    index = _index(_markers(ctx))
    for _param, holder, key in _texts(body):
        text = holder[key]
        for marker in _found(text, index):
            text = text.replace(marker, marker[0] + ESCAPE + marker[1:])
        holder[key] = text


TEMPLATE_RULES: tuple[Rule, ...] = (
    Rule("ct-kwargs-not-allowed",
         "a chat_template_kwargs key that is an argument of the tokenizer's "
         "apply_chat_template (`tokenize`, `tools`, ...) or off the allow-list when one is "
         "set (guard.limits.chat_template_kwargs, or the model's own), or a value that is "
         "not a short scalar or a short list of them",
         "GHSA-69j4-grxj-j64p (chat_template_kwargs could switch tokenize on; "
         "vllm-project/vllm#27205), GHSA-6fvq-23cw-5628 and GHSA-4hw3-g54f-xfrj (unfiltered, "
         "they reached apply_chat_template; filtered from #25794)", None, REJECT,
         frozenset({"chat_template_kwargs"}), _bad_kwargs, fix_in_context=_drop_bad_kwargs,
         harm="the template renderer takes only the listed switches"),
    Rule("ct-control-tokens",
         "a special token of the model (when unknown: a common turn marker or media "
         "placeholder) in the text of any role but system, developer and assistant (user, "
         "tool, any other spelling)",
         "vllm-project/vllm#11939 and #13911 (an <|image|> in a user message crashed the "
         "server; #10648), #31735 and huggingface/transformers#29279 (message text read as "
         "control tokens)", None, NORMALIZE, frozenset(), _control_text,
         fix_in_context=_escape_control_text, nested=("<",),
         harm="message text must not be read as the model's control tokens",
         remedy="a word joiner (U+2060) after the marker's first character: the same text, no "
                "control token"),
)
