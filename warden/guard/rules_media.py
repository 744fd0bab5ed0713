"""Multimodal inputs: media URLs the engine would fetch, and their number and size.

vLLM fetches `image_url`/`audio_url`/`video_url` itself, from any address unless started with
`--allowed-media-domains` (CVE-2025-6242; redirects followed, private addresses reachable:
vllm-project/vllm#57157). The gateway refuses what it can judge without a DNS lookup on the
request path: schemes other than http(s) and data, IP literals that are not public (every
spelling `inet_aton` accepts: 127.1, 0x7f000001, 2130706433), and local names (localhost,
*.local, *.internal). A public-looking name that resolves to a private address is not caught
here: set `guard.limits.allowed_media_domains` (or vLLM's own flag) for that.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

from warden.guard.rule import REJECT, Finding, Rule, RuleContext

MEDIA_PARTS = ("image_url", "audio_url", "video_url", "input_audio")
LOCAL_SUFFIXES = (".localhost", ".local", ".internal")


def media_parts(body: dict) -> Iterator[tuple[str, str, object]]:
    """(param, part type, its value) of every media part of a chat request's messages."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in MEDIA_PARTS:
                kind = part["type"]
                yield f"messages[{i}].content[{j}].{kind}", kind, part.get(kind)


def _url_of(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # the legacy IPv4 spellings a resolver still accepts
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def unsafe_url_reason(url: str, allowed_domains: list[str] | None) -> str | None:
    """Why the engine must not fetch `url`, or None."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "data":
        return None
    if scheme not in ("http", "https"):
        return f"the {scheme or 'missing'} scheme is not fetched (http, https or data only)"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "the URL has no host"
    address = _address(host)
    if address is not None:
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return f"{host} is not a public address"
    elif host == "localhost" or host.endswith(LOCAL_SUFFIXES):
        return f"{host} is a local name"
    if allowed_domains is not None and not any(
            host == domain or host.endswith("." + domain) for domain in allowed_domains):
        return f"{host} is not among guard.limits.allowed_media_domains"
    return None


def _private_url(body: dict, ctx: RuleContext) -> Finding | None:
    for param, _kind, value in media_parts(body):
        url = _url_of(value)
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
        inline = _url_of(value) or (value.get("data") if isinstance(value, dict) else None)
        if isinstance(inline, str) and len(inline) > longest:
            return Finding(f"{param}: an inline item larger than "
                           f"{limits.max_media_bytes} bytes", param)
    return None


# Media parts nest inside messages, which every chat request has: the guard looks for them
# only when the raw body holds one of these byte strings.
MARKERS = (b'_url"', b'"input_audio"')

MEDIA_RULES: tuple[Rule, ...] = (
    Rule("mm-private-url",
         "a media URL the engine would fetch from a private, loopback or local address, or "
         "with a scheme other than http(s)/data",
         "CVE-2025-6242 / GHSA-3f6c-7fw2-ppm4 (MediaConnector SSRF), vllm-project/vllm#57157",
         None, REJECT, frozenset(), _private_url, markers=MARKERS,
         harm="the engine must not fetch it"),
    Rule("mm-too-much-media",
         "more media items than guard.limits.max_media_items, or an inline one larger than "
         "max_media_bytes",
         "resource amplifier: every item is fetched, decoded and encoded by the engine", None,
         REJECT, frozenset(), _too_much_media, markers=MARKERS,
         harm="one request would take what many should"),
)
