"""The gateway's own image fetches (guard.media.fetch) against a local asyncio HTTP server,
whose name is resolved by a stand-in (the real resolution refuses loopback, as it must):
images come back inline, every failure is a 400 naming the parameter, every URL and redirect
is judged for SSRF, and the guard asks for fetches only when the body carries remote images."""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest

from tests import media_samples as media
from warden.config.schema import (
    BackendSpec,
    GuardLimitsSpec,
    GuardSpec,
    MediaFetchSpec,
    TimeoutsSpec,
)
from warden.errors import MediaFetchFailed
from warden.fleet.backend import Backend
from warden.guard.guard import Guard
from warden.guard.media_fetch import MediaFetcher, public_addresses, remote_images

PNG = media.png(64, 64)


async def serve(routes: dict[str, bytes]) -> asyncio.Server:
    """An HTTP/1.1 server answering each path with its raw response (head and body)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()).strip():
            pass
        path = line.split()[1].decode()
        writer.write(routes.get(path, b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"))
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def ok(body: bytes, content_type: bytes = b"image/png", framing: str = "length") -> bytes:
    if framing == "close":
        return b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\n\r\n%b" % (content_type, body)
    if framing == "chunked":
        return (b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ntransfer-encoding: chunked\r\n\r\n"
                b"%x\r\n%b\r\n0\r\n\r\n" % (content_type, len(body), body))
    return b"HTTP/1.1 200 OK\r\ncontent-type: %b\r\ncontent-length: %d\r\n\r\n%b" % (
        content_type, len(body), body)


def redirect(location: str) -> bytes:
    return f"HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n".encode()


def fetcher(**spec) -> MediaFetcher:
    limits = GuardLimitsSpec(**spec.pop("limits", {}))
    made = MediaFetcher(MediaFetchSpec(fetch=True, **spec), limits)

    async def loopback(host: str, port: int) -> list[str]:  # images.example -> 127.0.0.1
        assert host == "images.example"
        return ["127.0.0.1"]

    made.addresses = loopback
    return made


def chat(url: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}]}


async def inline(made: MediaFetcher, body: dict) -> MediaFetchFailed | None:
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    made.start(body, done.set_result)
    return await done


async def test_an_image_comes_back_inline_in_every_framing():
    server = await serve({"/a.png": ok(PNG), "/b.png": ok(PNG, framing="chunked"),
                          "/c.png": ok(PNG, framing="close")})
    port = server.sockets[0].getsockname()[1]
    body = chat(f"http://images.example:{port}/a.png")
    body["messages"][0]["content"] += [
        {"type": "image_url", "image_url": {"url": f"http://images.example:{port}/b.png"}},
        {"type": "input_image", "image_url": f"http://images.example:{port}/c.png"}]
    assert await inline(fetcher(), body) is None
    parts = body["messages"][0]["content"]
    expected = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert parts[1]["image_url"] == {"url": expected, "detail": "low"}
    assert parts[2]["image_url"] == {"url": expected} and parts[3]["image_url"] == expected
    server.close()


async def test_redirects_are_followed_and_each_is_judged():
    server = await serve({"/old": redirect("/a.png"), "/a.png": ok(PNG),
                          "/evil": redirect("http://169.254.169.254/latest/meta-data/"),
                          "/loop": redirect("/loop"), "/file": redirect("file:///etc/passwd"),
                          "/data": redirect("data:image/png;base64,AAAA")})
    port = server.sockets[0].getsockname()[1]
    base = f"http://images.example:{port}"
    body = chat(f"{base}/old")
    assert await inline(fetcher(), body) is None
    assert body["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/png")
    error = await inline(fetcher(), chat(f"{base}/evil"))
    assert error.param == "messages[0].content[1].image_url"
    assert "169.254.169.254 is not a public address" in error.message
    assert "more than 3 redirects" in (await inline(fetcher(), chat(f"{base}/loop"))).message
    assert "file scheme is not fetched" in (await inline(fetcher(), chat(f"{base}/file"))).message
    assert "data URL is not followed" in (await inline(fetcher(), chat(f"{base}/data"))).message
    server.close()


async def test_failures_are_400s_that_name_the_parameter():
    server = await serve({"/big.png": ok(b"\x89PNG" + b"\x00" * 5000),
                          "/page": ok(b"<html>hi</html>", b"text/html")})
    port = server.sockets[0].getsockname()[1]
    base = f"http://images.example:{port}"
    missing = await inline(fetcher(), chat(f"{base}/missing.png"))
    assert missing.status == 400 and missing.code == "media_fetch_failed"
    assert missing.message == ("messages[0].content[1].image_url: the image could not be "
                               "fetched: the image URL answered 404")
    too_big = await inline(fetcher(max_bytes=4096), chat(f"{base}/big.png"))
    assert "5004 bytes, more than 4096" in too_big.message
    page = chat(f"{base}/page")  # fetched: the media rules judge what came (text)
    assert await inline(fetcher(), page) is None
    assert page["messages"][0]["content"][1]["image_url"]["url"].startswith(
        "data:application/octet-stream;base64,")
    server.close()


async def test_an_endless_header_and_images_too_large_together_are_refused():
    endless = b"HTTP/1.1 200 OK\r\nx-filler: " + b"a" * (200 * 1024)  # (no end of line)
    half = ok(b"\x89PNG" + b"\x00" * 3000)  # each fits 4096 bytes; the two together do not
    server = await serve({"/endless": endless, "/a.png": half, "/b.png": half})
    base = f"http://images.example:{server.sockets[0].getsockname()[1]}"
    assert "response head is too large" in (
        await inline(fetcher(), chat(f"{base}/endless"))).message
    body = chat(f"{base}/a.png")
    body["messages"][0]["content"].append(
        {"type": "image_url", "image_url": {"url": f"{base}/b.png"}})
    assert "more than 4096 bytes together" in (await inline(fetcher(max_bytes=4096),
                                                           body)).message
    assert await inline(fetcher(max_bytes=4096), chat(f"{base}/a.png")) is None
    server.close()


async def test_a_silent_server_runs_into_the_timeout():
    async def silent(reader, writer):
        await reader.read()  # never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    error = await inline(fetcher(timeout=0.2), chat(f"http://images.example:{port}/a.png"))
    assert "not fetched within 0.2s (guard.media.timeout)" in error.message
    server.close()


async def test_a_request_that_finds_every_fetch_slot_taken_waits_no_longer_than_its_time():
    """Every slot held by others' slow images: a 503 within `timeout`, not an endless wait
    (and the slots it never had are not given back)."""
    made = fetcher(timeout=0.2)
    made._fetching = asyncio.Semaphore(0)   # (every turn taken)
    error = await inline(made, chat("http://images.example:9/a.png"))
    assert error is not None and error.status == 503 and error.code == "media_fetch_busy"
    assert made._fetching._value == 0


@pytest.mark.parametrize("url", ["http://user:pw@images.example/a.png",
                                 "http://images.example\\@cdn.example/a.png"])
async def test_urls_whose_host_parsers_disagree_on_are_not_fetched(url):
    assert "credentials or a backslash" in (await inline(fetcher(), chat(url))).message


def test_every_resolved_address_must_be_public():
    assert public_addresses("cdn.example", ["93.184.216.34"]) == ["93.184.216.34"]
    for private in (["10.0.0.7"], ["93.184.216.34", "127.0.0.1"], ["::ffff:169.254.169.254"],
                    ["fe80::1%eth0"]):
        with pytest.raises(MediaFetchFailed, match="not a public address"):
            public_addresses("rebind.example", private)
    with pytest.raises(MediaFetchFailed, match="does not resolve"):
        public_addresses("nothing.example", [])


def test_only_remote_images_are_fetched():
    body = chat("https://cdn.example/a.png")
    body["messages"][0]["content"] += [
        {"type": "image_url", "image_url": {"url": media.data_url(PNG)}},
        {"type": "video_url", "video_url": {"url": "https://cdn.example/v.mp4"}}]
    assert [(p, u) for p, _, _, u in remote_images(body)] == [
        ("messages[0].content[1].image_url", "https://cdn.example/a.png")]


def test_the_guard_asks_for_a_fetch_only_when_it_is_on_and_there_are_remote_images():
    backend = Backend(BackendSpec(name="b", url="http://127.0.0.1:9"), TimeoutsSpec())

    def admit(guard: Guard, body: dict):
        return guard.judge("/v1/chat/completions", "m", body, orjson.dumps(body), [backend])

    on = Guard(GuardSpec(media=MediaFetchSpec(fetch=True)))
    outcome = admit(on, chat("https://cdn.example/a.png"))
    assert outcome.fetch and outcome.notes == ["fetch remote media"]
    assert admit(on, chat(media.data_url(PNG))) is None
    assert admit(on, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}) is None
    assert admit(on, chat("http://10.0.0.1/a.png")).rejection is not None  # never fetched
    assert admit(Guard(GuardSpec()), chat("https://cdn.example/a.png")) is None  # off
    dry = Guard(GuardSpec(mode="dry_run", media=MediaFetchSpec(fetch=True)))
    assert dry.fetcher is None and admit(dry, chat("https://cdn.example/a.png")) is None
    tiny = chat(media.data_url(media.png(1, 28)))
    assert on.after_fetch("/v1/chat/completions", "m", tiny, [backend]).rejection is not None
