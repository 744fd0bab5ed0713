"""Where a media URL would take the engine, judged without a DNS lookup (pure).

vLLM fetches media itself. It splits the URL with the standard library's `urlsplit` (0.11) or
urllib3's `parse_url` (0.24+), then fetches with aiohttp (yarl) or requests. Those parsers
disagree, and each normalises the host before connecting:
- yarl maps an internationalised host through IDNA (UTS #46): `127。0。0。1`, `①②⑦.0.0.1`,
  fullwidth digits and `ⓛⓞⓒⓐⓛⓗⓞⓢⓣ` become `127.0.0.1` and `localhost`;
- requests percent-decodes it (`%31%32%37.0.0.1` is 127.0.0.1);
- the resolver reads every IPv4 spelling `inet_aton` accepts (`127.1`, `0x7f000001`,
  `2130706433`), a trailing dot is the same name, and IPv6 carries IPv4 inside it
  (`[::ffff:127.0.0.1]`, 6to4, Teredo, NAT64);
- `http://127.0.0.1:80\\@example.com/` is example.com to `urlsplit` but 127.0.0.1 to urllib3
  (a backslash ends its authority).
So a URL is judged by every host any of them could connect to, each normalised as above; one
that is not public is refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from urllib.parse import unquote, urlsplit

LOCAL_SUFFIXES = (".localhost", ".local", ".internal")
# IDNA's other full stops (UTS #46 maps them to "."), and what it drops from a name.
_DOTS = re.compile("[\u3002\uff0e\uff61]")
_IGNORED = re.compile("[\u00ad\u034f\u180b-\u180f\u200b-\u200d\u2060\ufe00-\ufe0f\ufeff]")
_NOT_IN_A_NAME = re.compile(r"[\x00-\x2c/:-@\[-\^`{-\x7f]")  # ASCII but a-z 0-9 . - _
_WHATWG_STRIP = "".join(map(chr, range(0x21)))  # C0 controls and space, at either end
_NEWLINES_AND_TABS = re.compile("[\t\n\r]")       # removed anywhere, as urlsplit does

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def unsafe_url_reason(url: str, allowed_domains: list[str] | None) -> str | None:
    """Why the engine must not fetch `url`, or None."""
    text = _NEWLINES_AND_TABS.sub("", url.strip(_WHATWG_STRIP))
    try:
        parts = urlsplit(text)
    except ValueError:
        return "the URL does not parse"
    scheme = parts.scheme.lower()
    if scheme == "data":
        return None
    if scheme not in ("http", "https"):
        return f"the {scheme or 'missing'} scheme is not fetched (http, https or data only)"
    hosts = {_host_of(parts.netloc), _host_of(_urllib3_authority(text, parts.scheme))}
    for host in sorted(hosts):
        reason = host_reason(host, allowed_domains)
        if reason is not None:
            return reason
    return None


def _urllib3_authority(text: str, scheme: str) -> str:
    """The authority as urllib3 (vLLM 0.24+, requests) splits it: after `scheme://`, up to
    the first `/`, `\\`, `?` or `#`."""
    rest = text[len(scheme) + 1:]
    if not rest.startswith("//"):
        return ""
    return re.split(r"[/\\?#]", rest[2:], maxsplit=1)[0]


def _host_of(authority: str) -> str:
    """The host of an authority: after the last `@`, without the port or IPv6 brackets."""
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.partition(":")[0]


def normalized_host(host: str) -> str:
    """`host` as the engine's HTTP client connects to it: percent-decoded, mapped as IDNA
    maps it (compatibility forms, case, its full stops, dropped characters), without a
    trailing dot."""
    for _ in range(3):  # a name has no use for "%": decode what a client might
        if "%" not in host:
            break
        host = unquote(host)
    host = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", host).lower()).lower()
    host = _IGNORED.sub("", _DOTS.sub(".", host))
    return host.rstrip(".")


def host_reason(raw_host: str, allowed_domains: list[str] | None) -> str | None:
    """Why a fetch from `raw_host` must not happen, or None."""
    host = normalized_host(raw_host)
    if not host:
        return "the URL has no host"
    address = ip_of(host)
    if address is not None:
        for inner in (address, *embedded_ipv4(address)):
            if not inner.is_global:
                return f"{raw_host} is not a public address ({inner})"
    elif _NOT_IN_A_NAME.search(host):
        return f"{raw_host} is not a valid host name"
    elif host == "localhost" or host.endswith(LOCAL_SUFFIXES):
        return f"{raw_host} is a local name"
    elif "." not in host:
        return f"{raw_host} is a single-label name (the engine's search domains resolve it)"
    if allowed_domains is not None and not any(
            host == domain or host.endswith("." + domain) for domain in allowed_domains):
        return f"{raw_host} is not among guard.limits.allowed_media_domains"
    return None


def ip_of(host: str) -> Address | None:
    """The address `host` spells, in any form the resolver accepts, or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host.isascii() or not host[:1].isdigit():
        return None
    try:  # the legacy IPv4 spellings: 127.1, 0x7f.1, 017700000001, 2130706433
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # (ValueError: a NUL in it)
        return None


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64),
    which a host reaches through it."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    packed = int(address)
    if packed >> 32 == 0 or packed >> 32 == 0x64FF9B << 64:  # ::a.b.c.d, 64:ff9b::a.b.c.d
        found.append(ipaddress.IPv4Address(packed & 0xFFFFFFFF))
    return found
