"""Inline media judged by their headers: for each rule its crashing body (the source's own
reproducer where there is one) and its nearest legitimate neighbour, which passes untouched;
the header readers on every format; and hostile data, which never raises."""

from __future__ import annotations

import base64
import random

import orjson
import pytest

from tests import media_samples as media
from warden.config.schema import BackendSpec, GuardLimitsSpec, GuardSpec, TimeoutsSpec
from warden.fleet.backend import Backend
from warden.guard import media_bytes, media_inline
from warden.guard.guard import Guard
from warden.guard.media_av import duration_seconds
from warden.guard.media_bytes import Base64View
from warden.guard.media_images import ImageHeader, image_header

CHAT, RESPONSES = "/v1/chat/completions", "/v1/responses"
PARAM = "messages[0].content[1].image_url"


def guard(**limits) -> Guard:
    return Guard(GuardSpec(limits=GuardLimitsSpec(**limits)))


def admit(body: dict, path: str = CHAT, g: Guard | None = None):
    backend = Backend(BackendSpec(name="b", url="http://127.0.0.1:9", vllm_version="0.32.0"),
                      TimeoutsSpec())
    return (g or guard()).judge(path, "m", body, orjson.dumps(body), [backend])


def chat(url: str, key: str = "image_url") -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"}, {"type": key, key: {"url": url}}]}]}


def refusal(outcome, rule: str) -> str:
    assert outcome is not None and outcome.rejection is not None, "not refused"
    message = outcome.rejection.message
    assert f"guard rule {rule};" in message, message
    return message


# -- the rules: a crashing body, and its nearest legitimate neighbour -----------------------

def test_a_decompression_bomb_is_refused_by_its_header():
    bomb = media.png(40000, 40000, header_only=True) + b"\x00" * 64  # 4.8 GB as RGB
    message = refusal(admit(chat(media.data_url(bomb))), "mm-image-too-many-pixels")
    assert "40000x40000 PNG image has 1600000000 pixels" in message


def test_a_normal_png_passes_untouched():
    body = chat(media.data_url(media.png(64, 64)))
    before = orjson.dumps(body)
    assert admit(body) is None and orjson.dumps(body) == before


def test_the_pixel_bound_is_the_operators():
    body = chat(media.data_url(media.jpeg(1000, 800)))
    assert admit(body) is None
    refusal(admit(body, g=guard(max_image_pixels=799_999)), "mm-image-too-many-pixels")


def test_an_extreme_aspect_ratio_is_refused():
    # The reproducer of the aspect-ratio failure: a 1093x5 PNG (ratio 218.6 > 200).
    message = refusal(admit(chat(media.data_url(media.png(1093, 5)))), "mm-image-aspect-ratio")
    assert "aspect ratio of 218.6" in message and "guard.limits.max_image_aspect_ratio" in message


def test_an_aspect_ratio_of_exactly_200_passes():
    assert admit(chat(media.data_url(media.png(5600, 28)))) is None
    refusal(admit(chat(media.data_url(media.png(5629, 28)))), "mm-image-aspect-ratio")


@pytest.mark.parametrize(("width", "height", "side"), [(26, 28, 28), (332, 27, 28), (1, 1, 2),
                                                      (1, 100, 2)])
def test_a_tiny_image_is_refused(width, height, side):
    message = refusal(admit(chat(media.data_url(media.png(width, height))),
                            g=guard(min_image_side=side)), "mm-image-too-small")
    assert f"a {width}x{height} image has a side under" in message


def test_a_16_pixel_icon_passes_by_default_and_the_bound_can_be_raised():
    assert admit(chat(media.data_url(media.png(16, 16)))) is None
    assert admit(chat(media.data_url(media.png(28, 28))), g=guard(min_image_side=28)) is None
    assert admit(chat(media.data_url(media.png(16, 16))), g=guard(min_image_side=28))


UNDECODABLE = [
    ("data:image/png,rawbytes", "only base64 data URLs are read"),
    ("data:image/png;base64", "no ','"),
    ("data:image/png;base64,", "its data is empty"),
    ("data:image/png;base64,not*base64*at*all", "not base64"),
    (media.data_url(b"<html><body>404 Not Found</body></html>"), "its data is text"),
    (media.data_url(media.png(64, 64)[:20]), "PNG header is cut short"),
    (media.data_url(media.png(0, 64, header_only=True)), "a size of 0x64"),
    (media.data_url(b"\xff\xd8\xff\xd9"), "EOI"),
    (media.data_url(media.jpeg(1000, 800)[:60]), "JPEG"),
    (media.data_url(b"RIFF\x10\x00\x00\x00WEBPVP8 "), "WebP header is cut short"),
]


@pytest.mark.parametrize(("url", "said"), UNDECODABLE, ids=[
    "not-base64-url", "no-comma", "empty", "bad-characters", "html", "png-cut", "png-zero",
    "jpeg-eoi", "jpeg-cut", "webp-cut"])
def test_an_undecodable_image_is_refused(url, said):
    message = refusal(admit(chat(url)), "mm-undecodable-media")
    assert said in message and message.startswith(f"{PARAM}: the inline image cannot be read")


def test_zero_bytes_where_an_image_belongs_are_refused():
    # CVE-2026-22778's reproducer: Pillow's error on it showed the client a heap address.
    message = refusal(admit(chat("data:image/png;base64,AAAAAAAAAAAAAAAA")),
                      "mm-undecodable-media")
    assert "its data is zero bytes, not an image" in message


def frames(*images: bytes) -> str:
    return "data:video/jpeg;base64," + ",".join(base64.b64encode(i).decode() for i in images)


def admit_on(version: str, body: dict):
    backend = Backend(BackendSpec(name="b", url="http://127.0.0.1:9", vllm_version=version),
                      TimeoutsSpec())
    return guard().judge(CHAT, "m", body, orjson.dumps(body), [backend])


def test_a_video_jpeg_list_longer_than_the_bound_is_refused_where_every_frame_is_decoded():
    # GHSA-pq5c-rjhq-qp7p: before 0.19 every frame was decoded (5000 of them: OOM).
    frame = media.jpeg(64, 64)
    message = refusal(admit_on("0.18.0", chat(frames(*[frame] * 33), "video_url")),
                      "mm-video-jpeg-frames")
    assert "more than 32 frames" in message
    assert admit_on("0.18.0", chat(frames(*[frame] * 32), "video_url")) is None
    assert admit_on("0.19.0", chat(frames(*[frame] * 33), "video_url")) is None  # (fixed)


def test_the_frames_of_a_video_jpeg_list_are_judged_as_images():
    bad = refusal(admit_on("0.32.0", chat(frames(media.png(64, 64), b"<html>"), "video_url")),
                  "mm-undecodable-media")
    assert "the inline video cannot be read: frame 2: its data is text" in bad
    bomb = refusal(admit_on("0.32.0", chat(frames(media.png(50000, 50000, header_only=True)),
                                           "video_url")), "mm-image-too-many-pixels")
    assert "a 50000x50000 PNG frame has 2500000000 pixels" in bomb
    small = chat(frames(media.png(16, 16)), "video_url")  # (only images' shapes are judged)
    assert admit_on("0.32.0", small) is None


@pytest.mark.parametrize("data", ids=["tiff", "ico", "netpbm"], argvalues=[
    b"II*\x00" + b"\x00" * 60,           # TIFF: not read here, so not judged
    b"\x00\x00\x01\x00" + b"\x01" * 60,  # ICO
    b"P6\n64 64\n255\n" + b"\x00" * 40,  # netpbm: text that Pillow reads as an image
])
def test_an_image_in_a_format_not_read_here_passes(data):
    assert admit(chat(media.data_url(data, "image/x-other"))) is None


def test_line_wrapped_base64_is_read_from_its_beginning():
    encoded = base64.encodebytes(media.png(1093, 5)).decode()  # MIME: 76 characters a line
    refusal(admit(chat("data:image/png;base64," + encoded)), "mm-image-aspect-ratio")
    assert admit(chat("data:image/png;base64," + base64.encodebytes(
        media.png(64, 64)).decode())) is None


def test_a_long_video_is_refused_by_its_movie_header():
    message = refusal(admit(chat(media.data_url(media.mp4(7200), "video/mp4"), "video_url")),
                      "mm-media-too-long")
    assert "lasts 7200 s" in message and "max_video_seconds (3600 s)" in message


@pytest.mark.parametrize("video", [media.mp4(600), media.mp4(600, moov_last=True),
                                   media.mp4(600, version=1)])
def test_a_ten_minute_video_passes(video):
    assert admit(chat(media.data_url(video, "video/mp4"), "video_url")) is None


def test_long_audio_is_refused_in_input_audio_and_audio_url():
    long_wav = base64.b64encode(media.wav(31, data=False) + b"\x00" * 64).decode()
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": long_wav, "format": "wav"}}]}]}
    message = refusal(admit(body, g=guard(max_audio_seconds=30)), "mm-media-too-long")
    assert message.startswith("messages[0].content[0].input_audio: the inline audio lasts 31 s")
    refusal(admit(chat(media.data_url(media.flac(7201), "audio/flac"), "audio_url")),
            "mm-media-too-long")


def test_short_audio_and_unread_containers_pass():
    assert admit(chat(media.data_url(media.wav(10), "audio/wav"), "audio_url"),
                 g=guard(max_audio_seconds=30)) is None
    assert admit(chat(media.data_url(b"ID3\x04" + b"\x00" * 200, "audio/mpeg"),
                      "audio_url")) is None  # MP3: bytes only
    assert admit(chat(frames(*[media.jpeg(64, 64)] * 3), "video_url")) is None


def test_text_where_a_video_belongs_is_refused():
    refusal(admit(chat(media.data_url(b'{"error": "not found"}', "video/mp4"), "video_url")),
            "mm-undecodable-media")


def test_responses_input_image_data_urls_are_judged():
    body = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "hi"},
        {"type": "input_image", "image_url": media.data_url(media.png(1, 28))}]}]}
    assert "input[0].content[1].image_url" in refusal(admit(body, RESPONSES),
                                                      "mm-image-too-small")
    body["input"][0]["content"][1]["image_url"] = media.data_url(media.png(64, 64))
    assert admit(body, RESPONSES) is None


# -- the cost rule: read once, by window ---------------------------------------------------

def test_each_item_is_read_once_whatever_the_number_of_rules(monkeypatch):
    calls = []
    real = media_inline.image_header
    monkeypatch.setattr(media_inline, "image_header", lambda read: calls.append(1) or real(read))
    assert admit(chat(media.data_url(media.png(64, 64)))) is None
    assert len(calls) == 1


def test_a_large_image_is_decoded_only_where_its_header_is(monkeypatch):
    decoded = []
    real = media_bytes.binascii.a2b_base64

    class Counting:
        Error = media_bytes.binascii.Error

        @staticmethod
        def a2b_base64(chunk, **kwargs):
            decoded.append(len(chunk))
            return real(chunk, **kwargs)

    monkeypatch.setattr(media_bytes, "binascii", Counting)
    big = media.jpeg(4000, 3000, exif=60_000) + b"\x00" * 3_000_000
    assert admit(chat(media.data_url(big, "image/jpeg"))) is None
    assert sum(decoded) < 200


# -- the header readers ------------------------------------------------------------------

def view(data: bytes) -> Base64View:
    return Base64View(base64.b64encode(data).decode())


@pytest.mark.parametrize(("data", "expected"), [
    (media.png(640, 480), ImageHeader("PNG", 640, 480)),
    (media.jpeg(1000, 800), ImageHeader("JPEG", 1000, 800)),
    (media.jpeg(1000, 800, exif=70_000, progressive=True), ImageHeader("JPEG", 1000, 800)),
    (b"\xff\xd8\xff\xff\xe0\x00\x04ab" + media.jpeg(12, 34)[20:], ImageHeader("JPEG", 12, 34)),
    (media.gif(320, 200), ImageHeader("GIF", 320, 200)),
    (media.webp(300, 150, "VP8 "), ImageHeader("WebP", 300, 150)),
    (media.webp(16383, 2, "VP8L"), ImageHeader("WebP", 16383, 2)),
    (media.webp(20000, 10000, "VP8X"), ImageHeader("WebP", 20000, 10000)),
    (media.bmp(800, -600), ImageHeader("BMP", 800, 600)),
], ids=["png", "jpeg", "jpeg-exif-progressive", "jpeg-fill-byte", "gif", "webp-vp8",
        "webp-vp8l", "webp-vp8x", "bmp-top-down"])
def test_image_headers_give_their_sizes(data, expected):
    assert image_header(view(data).read) == expected


@pytest.mark.parametrize(("data", "seconds"), [
    (media.mp4(12.5), 12.5), (media.mp4(90, moov_last=True), 90), (media.mp4(3, version=1), 3),
    (media.wav(2.5), 2.5), (media.flac(61), 61),
    (media.wav(2)[:40] + b"\xff\xff\xff\xff" + media.wav(2)[44:], 2),  # streamed: to the end
], ids=["mp4", "mp4-moov-last", "mp4-v1", "wav", "flac", "wav-streamed"])
def test_container_headers_give_their_durations(data, seconds):
    assert duration_seconds(view(data).read, len(data)) == pytest.approx(seconds)


def test_windows_read_what_a_whole_decode_reads():
    data = random.Random(7).randbytes(5000)
    whole = view(data)
    for offset, length in [(0, 1), (1, 2), (2, 3), (3, 4), (4097, 100), (4990, 50), (6000, 4)]:
        assert whole.read(offset, length) == data[offset:offset + length]


def test_hostile_data_never_raises():
    rng = random.Random(11)
    seeds = [media.png(64, 64), media.jpeg(10, 10), media.mp4(5), media.wav(1), media.flac(1),
             media.webp(9, 9, "VP8X"), media.bmp(3, 3), media.gif(2, 2)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds)[:rng.randrange(1, 200)])
        for _ in range(rng.randrange(0, 6)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        encoded = base64.b64encode(bytes(data)).decode()
        if rng.random() < 0.2:
            encoded = encoded[:rng.randrange(len(encoded) + 1)] + rng.choice(" \n=*-")
        image_header(Base64View(encoded).read)
        duration_seconds(Base64View(encoded).read, len(data))
        admit(chat("data:image/png;base64," + encoded))
        admit(chat("data:video/jpeg;base64," + encoded.replace("A", ",", 3), "video_url"))
