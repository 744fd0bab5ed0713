"""Where media items are in a request body, wherever vLLM reads messages: chat's and
tokenize's `messages`, the embeddings endpoint's `messages` or `input` (chat messages, batched
or not), and the Responses API's `input` items (`input_image` with an `image_url` string,
`input_file`'s `file_url`). vLLM reads a part by its keys when it has no `type`, so every part
holding a media key is a media item, whatever its `type` says."""

from __future__ import annotations

from collections.abc import Iterator

MEDIA_KEYS = ("image_url", "audio_url", "video_url", "file_url", "input_audio")
_CARRIERS = ("messages", "input", "previous_input_messages")


def message_objects(body: dict, inner: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    """(param, object) of every object in the body's messages or input items, in order, and
    in what their `inner` keys hold (a message's parts, a tool output's image), at any
    nesting of lists and objects: walked with a stack, not recursion (hostile depth)."""
    stack: list[tuple[str, object]] = [(key, body[key]) for key in reversed(_CARRIERS)
                                       if isinstance(body.get(key), list)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(node)))
                         if isinstance(item, list | dict))
        elif isinstance(node, dict):
            yield path, node
            for key in inner:
                found = node.get(key)
                if isinstance(found, list | dict):
                    stack.append((f"{path}.{key}", found))


def media_nodes(body: dict) -> Iterator[tuple[str, dict, str]]:
    """(param, the object holding it, media key) of every media item in the body's messages
    or input items (see `message_objects`)."""
    for path, node in message_objects(body, ("content", "output")):
        for key in MEDIA_KEYS:
            if node.get(key) is not None:
                yield f"{path}.{key}", node, key


def media_parts(body: dict) -> Iterator[tuple[str, str, object]]:
    """(param, media key, its value) of every media item (see `media_nodes`)."""
    for param, node, key in media_nodes(body):
        yield param, key, node[key]


def url_of(value: object) -> str | None:
    """A media item's URL: the value itself (Responses) or its `url` (chat)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    return None
