"""mm-private-url: a media URL is judged by the host the engine's HTTP client would connect to,
however it is spelled, on every endpoint that carries media; public URLs and data: URLs
pass."""

from __future__ import annotations

import idna
import orjson
import pytest

from tests import media_samples as media
from warden.config.schema import (
    BackendSpec,
    GuardLimitsSpec,
    GuardSpec,
    TimeoutsSpec,
    ValidationSpec,
)
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.guard.urls import normalized_host

CHAT, RESPONSES = "/v1/chat/completions", "/v1/responses"
METADATA = "http://169.254.169.254/latest/meta-data/"
PNG_64 = media.data_url(media.png(64, 64))  # a normal inline image

PRIVATE = [
    "http://127\u30020\u30020\u30021/",          # ideographic full stops (IDNA maps them)
    "http://\u2460\u2461\u2466.0.0.1/",           # enclosed digits (NFKC)
    "http://\uff11\uff12\uff17.0.0.1/",           # fullwidth digits
    "http://127\uff0e0\uff0e0\uff0e1/",           # fullwidth full stops
    "http://1\u00ad27.0.0.1/",                    # a soft hyphen IDNA drops
    "http://\u24db\u24de\u24d2\u24d0\u24db\u24d7\u24de\u24e2\u24e3/",  # circled "localhost"
    "http://%31%32%37.0.0.1/",                    # percent-encoded (requests decodes it)
    "http://127.0.0.1./",                         # a trailing dot
    "http://localhost./",
    "http://example.com@127.0.0.1/",              # userinfo
    "http://127.0.0.1:80\\@example.com/",         # example.com to urlsplit, 127.0.0.1 to urllib3
    "http://[::ffff:127.0.0.1]/",                 # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::127.0.0.1]/",                      # IPv4-compatible
    "http://[2002:a9fe:a9fe::1]/",                # 6to4 around 169.254.169.254
    "http://[64:ff9b::a9fe:a9fe]/",               # NAT64 around it
    "http://[fe80::1%25eth0]/",                   # link-local with a zone
    "http://2130706433/", "http://017700000001/", "http://0x7f.1/", "http://127.1/",
    "http://0/",
    "HTTP://LOCALHOST/",
    " http://127.0.0.1/",                         # space before the scheme
    "http://metadata/computeMetadata/v1/",        # a single label: the search domains' name
    "http://metadata.google.internal./",
    "http://169.254.169.254%00.example.com/",     # a NUL inside the host
    "http:/127.0.0.1/",                           # no authority at all
    "gopher://example.com/",
]
PUBLIC = [
    "https://upload.wikimedia.org/wikipedia/commons/cat.png",
    "http://93.184.216.34/cat.png",
    "https://b\u00fccher.example/cover.png",      # an internationalised public name
    "http://[2606:4700:4700::1111]/a.png",
    "https://example.com:8443/a.png?next=//127.0.0.1",
    PNG_64,
    "DATA" + PNG_64[4:],
]


def guard(validate: bool = True, **limits) -> Guard:
    return Guard(GuardSpec(limits=GuardLimitsSpec(**limits),
                           validation=ValidationSpec(enabled=validate)))


def admit(g: Guard, body: dict, path: str = CHAT, raw: bytes | None = None):
    backend = Backend(BackendSpec(name="b", url="http://127.0.0.1:9", vllm_version="0.32.0"),
                      TimeoutsSpec())
    return g.judge(path, "m", body, orjson.dumps(body) if raw is None else raw, [backend])


def image(url: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url}}]}]}


def refused(outcome) -> str | None:
    if outcome is None or outcome.rejection is None:
        return None
    assert outcome.rejection.code == "rejected_by_guard" and "mm-private-url" in \
        outcome.rejection.message
    return outcome.rejection.param


@pytest.mark.parametrize("url", PRIVATE)
def test_every_spelling_of_a_private_host_is_refused(url):
    assert refused(admit(guard(), image(url))) == "messages[0].content[1].image_url"


@pytest.mark.parametrize("url", PUBLIC)
def test_public_and_inline_urls_pass(url):
    assert admit(guard(), image(url)) is None


def test_allowed_domains_are_matched_on_the_normalized_host():
    allowed = guard(allowed_media_domains=["example.com"])
    assert admit(allowed, image("https://CDN.\uff45xample.com./a.png")) is None
    assert refused(admit(allowed, image("https://example.org/a.png")))


PART = {"type": "image_url", "image_url": {"url": METADATA}}
CARRIERS = [  # (endpoint, body, the param named)
    (CHAT, {"messages": [{"role": "user", "content": [{"image_url": {"url": METADATA}}]}]},
     "messages[0].content[0].image_url"),  # no type: vLLM reads the part by its key
    (CHAT, {"messages": [{"role": "user", "content": [
        {"type": "input_image", "image_url": METADATA}]}]}, "messages[0].content[0].image_url"),
    (CHAT, {"messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": METADATA}}]}]},
     "messages[0].content[0].video_url"),
    (CHAT, {"messages": [{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": METADATA}}]}]},
     "messages[0].content[0].audio_url"),
    (RESPONSES, {"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "hi"},
        {"type": "input_image", "image_url": METADATA}]}]}, "input[0].content[1].image_url"),
    (RESPONSES, {"input": [{"type": "message", "role": "user", "content": [
        {"type": "input_file", "file_url": METADATA}]}]}, "input[0].content[0].file_url"),
    (RESPONSES, {"input": [{"type": "computer_call_output", "call_id": "c", "output": {
        "type": "computer_screenshot", "image_url": METADATA}}]}, "input[0].output.image_url"),
    ("/v1/embeddings", {"messages": [{"role": "user", "content": [PART]}]},
     "messages[0].content[0].image_url"),
    ("/v1/embeddings", {"input": [[{"role": "user", "content": [PART]}]]},
     "input[0][0].content[0].image_url"),  # batched chat messages
    ("/tokenize", {"messages": [{"role": "user", "content": [PART]}]},
     "messages[0].content[0].image_url"),
]


@pytest.mark.parametrize(("path", "body", "param"), CARRIERS)
def test_every_endpoint_that_carries_media_is_inspected(path, body, param):
    # (validation off: the schema refuses some of these shapes first, vLLM takes them all)
    assert refused(admit(guard(validate=False), {"model": "m", **body}, path)) == param


def test_a_key_spelled_with_a_json_escape_is_still_seen():
    body = image(METADATA)
    raw = orjson.dumps(body).replace(b"image_url", b"image\\u005furl")  # the type too
    assert orjson.loads(raw) == body
    assert refused(admit(guard(), body, CHAT, raw)) == "messages[0].content[1].image_url"


def test_a_responses_text_input_and_public_images_pass():
    assert admit(guard(), {"model": "m", "input": "hello"}, RESPONSES) is None
    body = {"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png"},
        {"type": "input_image", "image_url": PNG_64}]}]}
    assert admit(guard(), body, RESPONSES) is None


def test_too_much_media_counts_every_carrier():
    part = {"type": "input_image", "image_url": "https://example.com/a.png"}
    body = {"model": "m", "input": [{"role": "user", "content": [part] * 17}]}
    outcome = admit(guard(), body, RESPONSES)
    assert outcome is not None and outcome.rejection is not None
    assert "mm-too-much-media" in outcome.rejection.message


@pytest.mark.parametrize("host", [
    "127\u30020\u30020\u30021", "\u2460\u2461\u2466.0.0.1", "\uff11\uff12\uff17.0.0.1",
    "127\uff610.0.1", "1\u00ad27.0.0.1", "LOCALHOST", "\u24db\u24de\u24d2\u24d0\u24db\u24d7"
    "\u24de\u24e2\u24e3", "\u216b.example", "b\u00fccher.example", "x\u200by.example"])
def test_hosts_are_mapped_as_idna_maps_them(host):
    # idna (the openai SDK's dependency): the mapping yarl (aiohttp) applies before connecting
    assert normalized_host(host) == idna.uts46_remap(host, std3_rules=False,
                                                     transitional=False)
