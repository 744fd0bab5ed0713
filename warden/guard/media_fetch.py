"""Remote images fetched by the gateway itself (`guard.media.fetch: true`), so that an image
that cannot be fetched is a 400 at the door rather than an engine's error (vLLM answered a
failed download with a 500: vllm-project/vllm#40856). The request then goes to the engine with
each image inline (a data URL), where the media rules judge it like any inline image.

Only requests that carry remote images take this path (the guard's marker test first): every
other request is admitted synchronously, with no await. Only `image_url` items are fetched
(chat's image parts, the Responses API's `input_image`); video and audio URLs are left to the
engine.

SSRF: the gateway is inside the network it guards, so every URL and every redirect is judged
as rule mm-private-url judges media URLs (`guard.limits.allowed_media_domains` included), a
URL with credentials or a backslash is not fetched (parsers disagree on its host), and every
address a name resolves to must be public; the connection goes to the address that was
checked (no second lookup for a rebinding resolver to answer).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import ssl
from collections.abc import Callable
from urllib.parse import quote, urljoin, urlsplit

import httptools

from warden.config.schema import GuardLimitsSpec, MediaFetchSpec
from warden.errors import MediaFetchBusy, MediaFetchFailed, WardenError
from warden.guard.media_walk import media_nodes, url_of
from warden.guard.urls import host_reason, unsafe_url_reason

log = logging.getLogger("warden.guard")

Done = Callable[[WardenError | None], None]
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_PATH_SAFE = "/%:@!$&'()*+,;=-._~?"
_MAX_HEAD = 64 * 1024  # a response head's bytes, at most


def remote_images(body: dict) -> list[tuple[str, dict, str, str]]:
    """(param, the object holding it, its key, URL) of every http(s) image in the body."""
    found = []
    for param, node, key in media_nodes(body):
        if key != "image_url":
            continue
        url = url_of(node[key])
        if url is not None and url.lstrip()[:5].lower() in ("http:", "https"):
            found.append((param, node, key, url.strip()))
    return found


def public_addresses(host: str, addresses: list[str]) -> list[str]:
    """`addresses` (what `host` resolved to) when every one is public; else refused."""
    if not addresses:
        raise MediaFetchFailed(f"{host} does not resolve to any address")
    for address in addresses:
        reason = host_reason(address.partition("%")[0], None)
        if reason is not None:
            raise MediaFetchFailed(f"{host} resolves to {address}, which is not a public "
                                   "address")
    return addresses


class _Response:
    """httptools' callbacks: the status, the headers wanted, the body up to `limit`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.headers: dict[bytes, bytes] = {}
        self.head_bytes = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes <= _MAX_HEAD:
            self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size <= self.limit:
            self.parts.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Budget:
    """The bytes a request's fetches may still take, all of them together (read as they
    arrive, so images fetched at once cannot each take the whole)."""

    def __init__(self, left: int):
        self.left = left


class MediaFetcher:
    """Fetches a request's remote images. Bounds: each response's head (`_MAX_HEAD` bytes
    received before it ends), each image (`max_bytes`), all of a request's images together
    (`max_bytes` as well: an image that fits alone fits; eight that each fit do not), and
    requests fetching at once (`MAX_FETCHING`: the others wait their turn)."""

    MAX_FETCHING = 16

    def __init__(self, spec: MediaFetchSpec, limits: GuardLimitsSpec):
        self.timeout = spec.timeout
        self.max_bytes = spec.max_bytes or limits.max_media_bytes
        self.max_redirects = spec.max_redirects
        self.allowed_domains = limits.allowed_media_domains
        self._tls: ssl.SSLContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetching: asyncio.Semaphore | None = None  # (made in the loop, at first use)

    def start(self, body: dict, done: Done) -> None:
        """Fetch the body's remote images and inline them (in place), then call `done` with
        None, or with the error the client is to get."""
        task = asyncio.get_running_loop().create_task(self._inline(body, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _inline(self, body: dict, done: Done) -> None:
        targets = remote_images(body)
        error: WardenError | None
        if self._fetching is None:
            self._fetching = asyncio.Semaphore(self.MAX_FETCHING)
        try:
            # Its turn, within the time its fetch gets: a request never waits unbounded
            # behind others' slow images.
            async with asyncio.timeout(self.timeout):
                await self._fetching.acquire()
        except TimeoutError:
            error = MediaFetchBusy(f"no turn to fetch the request's images within "
                                   f"{self.timeout:g}s ({self.MAX_FETCHING} requests' images "
                                   "are being fetched); retry soon")
        else:
            error = await self._fetched(targets)
        try:
            done(error)
        except Exception:  # (a bug in what follows: seen in the log, not lost in a task)
            log.exception("a request failed to go on after its images were fetched")

    async def _fetched(self, targets: list[tuple[str, dict, str, str]]) -> WardenError | None:
        """Fetch and inline `targets` in its turn (held: given back here); the error, if any."""
        assert self._fetching is not None
        try:
            inlined = await self._fetch_all(targets)
        except MediaFetchFailed as e:
            return e
        except Exception:
            log.exception("fetching a request's images failed")
            return WardenError("the gateway failed while fetching the request's images")
        finally:
            self._fetching.release()
        for (_, node, key, _), inline in zip(targets, inlined, strict=True):
            value = node[key]
            node[key] = {**value, "url": inline} if isinstance(value, dict) else inline
        return None

    async def _fetch_all(self, targets: list[tuple[str, dict, str, str]]) -> list[str]:
        """Every target fetched at once, all within the timeout; the first failure stops
        the rest."""
        budget = _Budget(self.max_bytes)
        try:
            async with asyncio.timeout(self.timeout), asyncio.TaskGroup() as group:
                fetches = [group.create_task(self._fetch(param, url, budget))
                           for param, _, _, url in targets]
        except TimeoutError:
            param = targets[0][0] if targets else None
            raise MediaFetchFailed(f"{param}: the images were not fetched within "
                                   f"{self.timeout:g}s (guard.media.timeout)",
                                   param=param) from None
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [fetch.result() for fetch in fetches]

    async def _fetch(self, param: str, url: str, budget: _Budget) -> str:
        """The image at `url` as a data URL, following redirects; refused with a message that
        names `param` when it cannot be fetched."""
        try:
            for hop in range(self.max_redirects + 1):
                status, response = await self._get(url, budget)
                location = response.headers.get(b"location")
                if status in _REDIRECTS and location:
                    url = urljoin(url, location.decode("latin-1"))
                    continue
                if status != 200:
                    raise MediaFetchFailed(f"the image URL answered {status}"
                                           + (f" after {hop} redirects" if hop else ""))
                media_type = response.headers.get(b"content-type", b"").decode("latin-1")
                media_type = media_type.partition(";")[0].strip().lower()
                if not media_type.startswith("image/"):
                    media_type = "application/octet-stream"
                data = base64.b64encode(b"".join(response.parts)).decode()
                return f"data:{media_type};base64,{data}"
            raise MediaFetchFailed(f"more than {self.max_redirects} redirects "
                                   "(guard.media.max_redirects)")
        except MediaFetchFailed as e:
            raise MediaFetchFailed(f"{param}: the image could not be fetched: {e.message}",
                                   param=param) from None
        except (OSError, ssl.SSLError, httptools.HttpParserError, ValueError) as e:
            raise MediaFetchFailed(f"{param}: the image could not be fetched: "
                                   f"{type(e).__name__}: {e}", param=param) from None

    async def addresses(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to, every one public (else refused)."""
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
        return public_addresses(host, [str(info[4][0]) for info in infos])

    async def _get(self, url: str, budget: _Budget) -> tuple[int, _Response]:
        reason = unsafe_url_reason(url, self.allowed_domains)
        if reason is not None:
            raise MediaFetchFailed(reason)
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            raise MediaFetchFailed(f"a redirect to a {parts.scheme} URL is not followed")
        if "@" in parts.netloc or "\\" in url:
            raise MediaFetchFailed("a URL with credentials or a backslash is not fetched")
        tls = parts.scheme.lower() == "https"
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        address = (await self.addresses(host, port))[0]
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            address, port, ssl=self._tls if tls else None,
            server_hostname=host if tls else None)
        try:
            target = quote(parts.path or "/", safe=_PATH_SAFE) + (
                "?" + quote(parts.query, safe=_PATH_SAFE) if parts.query else "")
            name = f"[{host}]" if ":" in host else host.encode("idna").decode()
            authority = name + (f":{parts.port}" if parts.port else "")
            writer.write(f"GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: warden"
                         "\r\nAccept: image/*\r\nAccept-Encoding: identity\r\n"
                         "Connection: close\r\n\r\n".encode())
            return await self._read(reader, budget)
        finally:
            writer.close()

    async def _read(self, reader: asyncio.StreamReader,
                    budget: _Budget) -> tuple[int, _Response]:
        response = _Response(self.max_bytes)
        parser = httptools.HttpResponseParser(response)
        received = 0
        while not response.complete:
            data = await reader.read(65536)
            received += len(data)
            if not response.head_done and received > _MAX_HEAD:
                # (counted as received: httptools reports a header only once it ends, so
                # one endless header would be buffered whole)
                raise MediaFetchFailed("the image server's response head is too large")
            if not data:
                if response.head_done and b"content-length" not in response.headers \
                        and b"transfer-encoding" not in response.headers:
                    break  # a body that ends with the connection
                raise MediaFetchFailed("the connection closed before the response ended")
            had = response.size
            parser.feed_data(data)
            budget.left -= response.size - had  # (the images' bytes, not their heads)
            if response.head_bytes > _MAX_HEAD:
                raise MediaFetchFailed("the image server's response head is too large")
            if response.head_done:
                status = parser.get_status_code()
                if status in _REDIRECTS or status != 200:
                    return status, response  # (its body is not needed)
                length = response.headers.get(b"content-length", b"")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise MediaFetchFailed(f"the image is {int(length)} bytes, more than "
                                           f"{self.max_bytes} (guard.media.max_bytes)")
            if response.size > self.max_bytes:
                raise MediaFetchFailed(f"the image is more than {self.max_bytes} bytes "
                                       "(guard.media.max_bytes)")
            if budget.left < 0:
                raise MediaFetchFailed(f"the request's images are more than {self.max_bytes} "
                                       "bytes together (guard.media.max_bytes)")
        return parser.get_status_code(), response
