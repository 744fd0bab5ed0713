"""Multimodal inputs: media URLs the engine would fetch, and their number and size.

vLLM fetches `image_url`/`audio_url`/`video_url` itself, from any address unless started with
`--allowed-media-domains` (CVE-2025-6242; redirects followed, private addresses reachable:
vllm-project/vllm#57157). The gateway refuses what it can judge without a DNS lookup on the
request path (warden.guard.urls): schemes other than http(s) and data, hosts that are not
public however they are spelled, and local names. A public-looking name that resolves to a
private address is not caught here: set `guard.limits.allowed_media_domains` (or vLLM's own
flag) for that.

Media come in content parts wherever vLLM reads messages (warden.guard.media_walk); every part
holding a media key is judged, whatever its `type` says. What inline items hold is judged by
rules_media_inline.
"""

from __future__ import annotations

from warden.guard.media_walk import media_parts, url_of
from warden.guard.rule import REJECT, Finding, Rule, RuleContext
from warden.guard.urls import unsafe_url_reason


def _private_url(body: dict, ctx: RuleContext) -> Finding | None:
    for param, _kind, value in media_parts(body):
        url = url_of(value)
        if url is None:
            continue
        reason = unsafe_url_reason(url, ctx.limits.allowed_media_domains)
        if reason is not None:
            return Finding(f"{param}: {reason}", param)
    return None


def _too_much_media(body: dict, ctx: RuleContext) -> Finding | None:
    limits = ctx.limits
    # base64 holds 3 bytes in 4 characters; the prefix (data:image/png;base64,) is noise
    longest = limits.max_media_bytes * 4 // 3 + 64
    for count, (param, _kind, value) in enumerate(media_parts(body), 1):
        if count > limits.max_media_items:
            return Finding(f"more than {limits.max_media_items} media items", param)
        inline = url_of(value) or (value.get("data") if isinstance(value, dict) else None)
        if isinstance(inline, str) and len(inline) > longest:
            return Finding(f"{param}: an inline item larger than "
                           f"{limits.max_media_bytes} bytes", param)
    return None


# Media parts nest inside messages, which every chat request has: the guard looks for them
# only when some object of the body has a key (or a `type`) that names one (guard/triggers).
NESTED = ("*_url", "input_audio")

MEDIA_RULES: tuple[Rule, ...] = (
    Rule("mm-private-url",
         "a media URL the engine would fetch from a private, loopback or local address "
         "(however the host is spelled), or with a scheme other than http(s)/data",
         "CVE-2025-6242 / GHSA-3f6c-7fw2-ppm4 (MediaConnector SSRF), vllm-project/vllm#57157",
         None, REJECT, frozenset(), _private_url, nested=NESTED,
         harm="the engine must not fetch it"),
    Rule("mm-too-much-media",
         "more media items than guard.limits.max_media_items, or an inline one larger than "
         "max_media_bytes",
         "resource amplifier: every item is fetched, decoded and encoded by the engine", None,
         REJECT, frozenset(), _too_much_media, nested=NESTED,
         harm="one request would take what many should"),
)
