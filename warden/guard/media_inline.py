"""The inline media items of a request (data: URLs, `input_audio` data), each read once from
its header: what an image claims to be (format, width, height), how long a video or audio item
says it lasts, or why it cannot be what it claims.

`inline_media(body, ctx)` reads every item once per admission however many rules ask (the
result is kept in `ctx.memo`), and decodes only the few bytes each header needs
(media_bytes.Base64View).
"""

from __future__ import annotations

from dataclasses import dataclass

from warden.guard.media_av import duration_seconds
from warden.guard.media_bytes import Base64View, looks_like_text, split_data_url
from warden.guard.media_images import ImageHeader, image_header
from warden.guard.media_walk import media_parts
from warden.guard.rule import RuleContext

# Which kind of media each key holds (file_url, a document, is not read here).
KINDS = {"image_url": "image", "video_url": "video", "audio_url": "audio",
         "input_audio": "audio"}
_MEMO_KEY = "inline_media"


@dataclass(frozen=True)
class InlineItem:
    param: str                  # where it is in the body (messages[0].content[1].image_url)
    kind: str                   # image | video | audio
    problem: str | None = None  # why it cannot be what it claims (rule mm-undecodable-media)
    image: ImageHeader | None = None
    seconds: float | None = None  # a video's or audio's duration, from its header


def inline_media(body: dict, ctx: RuleContext) -> list[InlineItem]:
    """The body's inline media, read once per admission."""
    memo = ctx.memo.get(_MEMO_KEY)
    if isinstance(memo, list):
        return memo
    items = []
    for param, key, value in media_parts(body):
        kind = KINDS.get(key)
        if kind is None:
            continue
        data = _inline_data(key, value)
        if data is None:
            continue
        items.append(_read(param, kind, data))
    ctx.memo[_MEMO_KEY] = items
    return items


def _inline_data(key: str, value: object) -> tuple[str, str] | str | None:
    """(media type, base64) of an inline item, why it is unreadable, or None: not inline."""
    if key == "input_audio":  # {"data": <base64>, "format": "wav"}
        data = value.get("data") if isinstance(value, dict) else None
        if not isinstance(data, str):
            return None
        audio_format = value.get("format") if isinstance(value, dict) else None
        return f"audio/{audio_format}" if isinstance(audio_format, str) else "", data
    url = value if isinstance(value, str) else \
        value.get("url") if isinstance(value, dict) else None
    if not isinstance(url, str):
        return None
    url = url.lstrip()
    if url[:5].lower() != "data:":
        return None
    return split_data_url(url)


def _read(param: str, kind: str, data: tuple[str, str] | str) -> InlineItem:
    if isinstance(data, str):
        return InlineItem(param, kind, problem=data)
    media_type, text = data
    if kind == "video" and media_type == "video/jpeg":
        # vLLM reads this one as JPEG frames joined by ","; not judged here.
        return InlineItem(param, kind)
    if not text:
        return InlineItem(param, kind, problem="its data is empty")
    view = Base64View(text)
    head = view.read(0, 64)
    if head is None:
        return InlineItem(param, kind, problem=view.invalid)
    if not head:
        return InlineItem(param, kind, problem="its data is empty")
    if looks_like_text(head, image=kind == "image"):
        return InlineItem(param, kind, problem=f"its data is text, not {_a(kind)}")
    if kind == "image":
        judged = image_header(view.read)
        if isinstance(judged, str):
            return InlineItem(param, kind, problem=judged)
        return InlineItem(param, kind, image=judged, problem=view.invalid)
    seconds = duration_seconds(view.read, view.size)
    return InlineItem(param, kind, seconds=seconds, problem=view.invalid)


def _a(kind: str) -> str:
    return "an image" if kind == "image" else f"{kind} media"
