"""Inputs the engine takes on trust: tensors a client sends as embeddings, and Responses API
input items of a shape that make vLLM's error larger than the request by orders of magnitude.

Embeddings (`prompt_embeds` on completions; `image_embeds` and `audio_embeds` content parts in
messages) are tensors the engine deserializes (torch.load) and runs as they are. Below 0.11.1
a crafted one corrupted memory (CVE-2025-62164); after it, wrong or mixed shapes, penalties
or LoRA beside them still kill engines, in issues that are open. Recent vLLM takes them only
when started with --enable-prompt-embeds or --enable-mm-embeds (0.11 took embedding parts by
default), for clients it trusts; the gateway cannot tell who those are, so it refuses them
unless told. Looking for the parts costs one more search of each raw body (`_embeds"`). To
allow them:
`guard.disable: [pe-untrusted]` for every model, or `safe_for: [pe-untrusted]` on the
backends whose clients are trusted (every backend serving a model: allowed for that model;
with `guard.actions: {pe-untrusted: route}`, sent only to those backends).
"""

from __future__ import annotations

from warden.guard.media_walk import message_objects
from warden.guard.rule import REJECT, Finding, Rule, RuleContext

EMBEDS = ("image_embeds", "audio_embeds")
# Embedding parts nest inside messages, which every chat request has: the guard looks for
# them only when the raw body holds one of these (a JSON escape can spell the key without
# them, so a body with an escape is looked at too).
EMBED_NESTED = ("*_embeds",)  # a part's key or `type` (guard/triggers)
RESPONSES = "/v1/responses"


def _embed_part(body: dict) -> str | None:
    """The first content part that carries an embedding tensor (by its key or its type), as
    a parameter path."""
    for path, node in message_objects(body, ("content",)):
        for key in EMBEDS:
            if node.get(key) is not None:
                return f"{path}.{key}"
        if node.get("type") in EMBEDS:
            return f"{path}.type"
    return None


def _embeddings(body: dict, ctx: RuleContext) -> Finding | None:
    if body.get("prompt_embeds") is not None:
        return Finding("prompt_embeds: embedding tensors sent by the client",
                       "prompt_embeds")
    param = _embed_part(body)
    if param is None:
        return None
    return Finding(f"{param}: embedding tensors sent by the client", param)


def _bad_input_item(body: dict, ctx: RuleContext) -> Finding | None:
    """A Responses API input item no version of vLLM reads: not an object, or a message
    whose content is neither text nor a list of parts, or a part that is not an object.
    (Only shapes that fail every item type; what could be valid is left to vLLM.)"""
    items = body.get("input")
    if ctx.path != RESPONSES or not isinstance(items, list):
        return None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            return Finding(f"input[{i}] is not an object", f"input[{i}]")
        if "role" not in item or "content" not in item:
            continue
        content = item["content"]
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    return Finding(f"input[{i}].content[{j}] is not an object",
                                   f"input[{i}].content[{j}]")
        elif not isinstance(content, str):
            return Finding(f"input[{i}].content is neither text nor a list of parts",
                           f"input[{i}].content")
    return None


INPUT_RULES: tuple[Rule, ...] = (
    Rule("pe-untrusted",
         "embedding tensors sent by the client: `prompt_embeds`, or `image_embeds` / "
         "`audio_embeds` content parts, which the engine deserializes and runs unchecked "
         "(allowed with `guard.disable` or a backend's `safe_for`)",
         "CVE-2025-62164 (a sparse tensor corrupted memory, < 0.11.1), vllm-project/vllm"
         "#26928 (embedding shapes unchecked, < 0.11.1), #45383 (prompt_embeds on "
         "multimodal models, < 0.24), #57719 (with penalties: device assert, open), #51122 "
         "(with LoRA: illegal memory access, open), #31219 (audio_embeds of different "
         "lengths, open)", None, REJECT, frozenset({"prompt_embeds"}), _embeddings,
         nested=EMBED_NESTED,
         harm="the engine loads and runs client tensors unchecked, and some crash it; "
              "this gateway accepts them only from trusted deployments"),
    Rule("resp-input-shape",
         "a `/v1/responses` `input` item that is not an object, or a message whose "
         "`content` is neither text nor a list of part objects",
         "vllm-project/vllm#49239 (one error per bad item, each repeating the whole input: "
         "a few KB of items made a 114 MB answer)", None, REJECT, frozenset({"input"}),
         _bad_input_item,
         harm="vLLM's error for it repeats the whole input once per bad item"),
)
