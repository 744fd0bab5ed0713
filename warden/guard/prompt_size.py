"""How many tokens a request's prompt has at least, without the model's tokenizer.

A rule that refuses a prompt for its length must never refuse one that fits, so the figure is
an under-estimate: token ids are counted; text counts its characters divided by the most
characters one token can spell (`guard.limits.max_chars_per_token`: vLLM's own pre-check
divides by the same figure, read from the vocabulary). Whatever else the engine adds — the
chat template's markers, tool definitions, media tokens — only makes the real prompt longer.

Completions and embeddings may batch several prompts: each is a request of its own to the
engine, so the longest one counts. Pure functions; any JSON value anywhere is read without
raising (what is not a prompt shape counts for nothing).
"""

from __future__ import annotations


def prompt_tokens_at_least(body: dict, chars_per_token: int) -> tuple[int, str | None]:
    """(tokens, the parameter holding them): the longest prompt of the body, at least."""
    best, param = 0, None
    messages = body.get("messages")
    if isinstance(messages, list):
        best, param = _message_chars(messages) // chars_per_token, "messages"
    # (The other carriers, `prompt` and `input`, by literal look-ups, and only a present one
    # measured: a loop over their names costs mypyc a generic iterator and two calls, ~700
    # instructions, on every limited request.)
    prompt = body.get("prompt")
    if prompt is not None:
        tokens = _longest(prompt, chars_per_token)
        if tokens > best:
            best, param = tokens, "prompt"
    given = body.get("input")
    if given is not None:
        tokens = _longest(given, chars_per_token)
        if tokens > best:
            best, param = tokens, "input"
    return best, param


def _longest(value: object, chars_per_token: int) -> int:
    """A prompt or a batch of them: text, token ids, lists of either, or chat-like items
    (the embeddings endpoint's messages as `input`, the Responses API's input items)."""
    if isinstance(value, str):
        return len(value) // chars_per_token
    if not isinstance(value, list) or not value:
        return 0
    if all(isinstance(item, dict) for item in value):
        return _message_chars(value) // chars_per_token
    if not isinstance(value[0], list | str):
        return len(value)  # one prompt of token ids
    return max(_one(item, chars_per_token) for item in value)


def _one(prompt: object, chars_per_token: int) -> int:
    """One prompt of a batch: text, or token ids (a list, whatever it holds)."""
    if isinstance(prompt, str):
        return len(prompt) // chars_per_token
    return len(prompt) if isinstance(prompt, list) else 0


def _message_chars(messages: list) -> int:
    """The characters of every message's text: string content and text parts."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else None
                if isinstance(text, str):
                    total += len(text)
    return total
