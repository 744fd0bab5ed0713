"""Inline media judged by what its header says (warden.guard.media_inline): images that cannot
be decoded, that decode into too many pixels, whose shape a vision processor refuses, video or
audio longer than a request should carry, and video/jpeg frame lists longer than a vLLM before
0.19 survives.

Each item is read once per admission, a few bytes of its header (never decoded whole), and
only when the raw body carries a media marker. An image in a format not read here (TIFF,
HEIC, ...) is not judged: Pillow reads some forty formats, several without a signature, and a
legitimate image must not be refused for being unfamiliar.
"""

from __future__ import annotations

from collections.abc import Iterator

from warden.guard.media_images import ImageHeader
from warden.guard.media_inline import InlineItem, inline_media
from warden.guard.rule import REJECT, Finding, Rule, RuleContext
from warden.guard.rules_media import NESTED


def _images(body: dict, ctx: RuleContext,
            frames: bool = False) -> Iterator[tuple[InlineItem, ImageHeader]]:
    """Inline images (and, with `frames`, the largest frame of each video/jpeg list)."""
    for item in inline_media(body, ctx):
        if item.image is not None and (frames or item.kind == "image"):
            yield item, item.image


def _undecodable(body: dict, ctx: RuleContext) -> Finding | None:
    for item in inline_media(body, ctx):
        if item.problem is not None:
            return Finding(f"{item.param}: the inline {item.kind} cannot be read: "
                           f"{item.problem}", item.param)
    return None


def _too_many_pixels(body: dict, ctx: RuleContext) -> Finding | None:
    bound = ctx.limits.max_image_pixels
    for item, image in _images(body, ctx, frames=True):
        pixels = image.width * image.height
        if pixels > bound:
            what = "image" if item.kind == "image" else "frame"
            return Finding(f"{item.param}: a {image.width}x{image.height} {image.format} "
                           f"{what} has {pixels} pixels, more than "
                           f"guard.limits.max_image_pixels ({bound})", item.param)
    return None


def _aspect_ratio(body: dict, ctx: RuleContext) -> Finding | None:
    bound = ctx.limits.max_image_aspect_ratio
    for item, image in _images(body, ctx):
        ratio = max(image.width, image.height) / min(image.width, image.height)
        if ratio > bound:
            return Finding(f"{item.param}: a {image.width}x{image.height} image has an "
                           f"aspect ratio of {ratio:.1f}, above "
                           f"guard.limits.max_image_aspect_ratio ({bound:g})", item.param)
    return None


def _too_small(body: dict, ctx: RuleContext) -> Finding | None:
    bound = ctx.limits.min_image_side
    for item, image in _images(body, ctx):
        if min(image.width, image.height) < bound:
            return Finding(f"{item.param}: a {image.width}x{image.height} image has a side "
                           f"under guard.limits.min_image_side ({bound} px)", item.param)
    return None


def _too_many_frames(body: dict, ctx: RuleContext) -> Finding | None:
    bound = ctx.limits.max_video_frames
    for item in inline_media(body, ctx):
        if item.frames is not None and item.frames > bound:
            return Finding(f"{item.param}: a video/jpeg data URL of more than {bound} frames "
                           "(guard.limits.max_video_frames)", item.param)
    return None


def _too_long(body: dict, ctx: RuleContext) -> Finding | None:
    limits = ctx.limits
    for item in inline_media(body, ctx):
        if item.seconds is None:
            continue
        bound = limits.max_video_seconds if item.kind == "video" else limits.max_audio_seconds
        if item.seconds > bound:
            return Finding(f"{item.param}: the inline {item.kind} lasts {item.seconds:.0f} s "
                           f"by its header, more than guard.limits.max_{item.kind}_seconds "
                           f"({bound:g} s)", item.param)
    return None


INLINE_MEDIA_RULES: tuple[Rule, ...] = (
    Rule("mm-undecodable-media",
         "an inline image, video or audio item that cannot be what it claims: a data URL "
         "that is not base64, data that does not decode, is empty or is text, or an image "
         "whose PNG, JPEG, GIF, WebP or BMP header is cut short or impossible",
         "vllm-project/vllm#19202 (Pillow's errors on a bad data URL were a 500 until it), "
         "#18890 (a bad base64 image: an exception in the API server)",
         None, REJECT, frozenset(), _undecodable, nested=NESTED,
         harm="the engine cannot decode it"),
    Rule("mm-image-too-many-pixels",
         "an inline image whose header claims more pixels than "
         "guard.limits.max_image_pixels (a decompression bomb)",
         "vllm-project/vllm#47010 (a small image declaring a huge raster exhausted the API "
         "server's memory; VLLM_MAX_IMAGE_PIXELS)",
         None, REJECT, frozenset(), _too_many_pixels, nested=NESTED,
         harm="decoding it takes more memory than any request should"),
    Rule("mm-image-aspect-ratio",
         "an inline image whose long side is more than guard.limits.max_image_aspect_ratio "
         "times its short side",
         "the Qwen2-VL family's smart_resize, which vLLM runs (vllm/model_executor/models/"
         "qwen2_vl.py): 'absolute aspect ratio must be smaller than 200'; its refusals were "
         "500s (vllm-project/vllm#15080)",
         None, REJECT, frozenset(), _aspect_ratio, nested=NESTED,
         harm="vision processors of the Qwen2-VL family fail on it"),
    Rule("mm-image-too-small",
         "an inline image with a side under guard.limits.min_image_side pixels",
         "GHSA-grg2-63fw-f2qr / CVE-2026-22773 (a 1x1 image killed EngineCore on Idefics3 "
         "models, fixed in 0.12.0); vllm-project/vllm#15080 (a 26x28 image: 500, "
         "Qwen2.5-VL), #21109 (332x27, 0.8.5), #9141 (a 1 px side killed the engine, mllama)",
         None, REJECT, frozenset(), _too_small, nested=NESTED,
         harm="vision processors fail on so small an image"),
    Rule("mm-media-too-long",
         "an inline video or audio item whose container header (MP4/MOV/M4A, WAV, FLAC) "
         "gives a duration above guard.limits.max_video_seconds or max_audio_seconds",
         "vllm-project/vllm#44970 (audio decoded without a bound: 25 MB of Opus became "
         "15 GB of samples; vLLM caps it at 600 s since), #56912 (Qwen2-Audio: a clip over "
         "30 s killed the engine), #28375 (a long video held the engine at full CPU)",
         None, REJECT, frozenset(), _too_long, nested=NESTED,
         harm="one request would take what many should"),
    Rule("mm-video-jpeg-frames",
         "a video/jpeg data URL (images joined by ',') of more than "
         "guard.limits.max_video_frames frames",
         "GHSA-pq5c-rjhq-qp7p / CVE-2026-5497 (every frame was decoded, whatever the "
         "num_frames bound: thousands of them exhausted memory; fixed in 0.19.0)",
         (0, 19, 0), REJECT, frozenset(), _too_many_frames, nested=NESTED,
         harm="decoding every frame exhausts the server's memory"),
)
