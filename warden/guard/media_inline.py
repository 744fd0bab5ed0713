"""The inline media items of a request (data: URLs, `input_audio` data), each read once from
its header: what an image claims to be (format, width, height), how long a video or audio item
says it lasts, how many frames a `video/jpeg` list holds, or why it cannot be what it claims.

`inline_media(body, ctx)` reads every item once per admission however many rules ask (the
result is kept in `ctx.memo`), and decodes only the few bytes each header needs
(media_bytes.Base64View).
"""

from __future__ import annotations

from dataclasses import dataclass

from warden.guard.media_av import duration_seconds
from warden.guard.media_bytes import Base64View, looks_like_text, only_zeros, split_data_url
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
    image: ImageHeader | None = None  # an image's header; a frame list's largest frame's
    seconds: float | None = None  # a video's or audio's duration, from its header
    frames: int | None = None     # the frames of a video/jpeg list (up to the bound, plus one)


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
        items.append(_read(param, kind, data, ctx.limits.max_video_frames))
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


def _read(param: str, kind: str, data: tuple[str, str] | str, max_frames: int) -> InlineItem:
    if isinstance(data, str):
        return InlineItem(param, kind, problem=data)
    media_type, text = data
    if kind == "video" and media_type == "video/jpeg":
        return _frames(param, text, max_frames)
    if kind == "image":
        image = _image(Base64View(text))
        if isinstance(image, str):
            return InlineItem(param, kind, problem=image)
        return InlineItem(param, kind, image=image)
    view = Base64View(text)
    head = view.read(0, 64)
    if not head:
        return InlineItem(param, kind, problem=view.invalid or "its data is empty")
    if looks_like_text(head, image=False):
        return InlineItem(param, kind, problem=f"its data is text, not {kind} media")
    seconds = duration_seconds(view.read, view.size)
    return InlineItem(param, kind, seconds=seconds, problem=view.invalid)


def _image(view: Base64View) -> ImageHeader | str | None:
    """An image's header, or why it cannot be an image (None: not judged)."""
    head = view.read(0, 64)
    if not head:
        return view.invalid or "its data is empty"
    if looks_like_text(head, image=True):
        return "its data is text, not an image"
    if only_zeros(head):
        return "its data is zero bytes, not an image"
    judged = image_header(view.read)
    return view.invalid if judged is None and view.invalid is not None else judged


def _frames(param: str, text: str, max_frames: int) -> InlineItem:
    """A `video/jpeg` data URL: images joined by "," that vLLM decodes one by one (before
    0.19, every one of them). Frames are counted up to the bound (plus one), and each of
    those is judged as an image; the largest is kept."""
    largest: ImageHeader | None = None
    start = count = 0
    while start <= len(text) and count <= max_frames:
        stop = text.find(",", start)
        stop = len(text) if stop < 0 else stop
        count += 1
        frame = _image(Base64View(text, start, stop))
        if isinstance(frame, str):
            return InlineItem(param, "video", problem=f"frame {count}: {frame}")
        if frame is not None and (largest is None or frame.width * frame.height
                                  > largest.width * largest.height):
            largest = frame
        start = stop + 1
    return InlineItem(param, "video", image=largest, frames=count)

